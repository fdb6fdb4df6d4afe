"""The jenkins family: run allow-listed Jenkins jobs, and scale and show the build agents."""

from marvin import Integer, Pairs, Text, command
from marvin.actions.jenkins import BuildFailed, run_build
from marvin.actions.jenkins_workers import agents, group, scale_workers

JOB = Text(
    pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$",
    max_length=200,
    help="a Jenkins job name such as deploy-app (in a folder: team/deploy-app)",
)
JOB_PARAMETERS = Pairs(
    help="the job's own parameters as NAME=value after the command, e.g. VERSION=1.2; "
    'a name Marvin uses itself (job, parameters) goes in parameters={"job": "..."}'
)
COUNT = Integer(min=0, max=500, help="a number of agents")


@command(
    "jenkins.build",
    "run jenkins job {{ job }}",
    description="Run an allow-listed Jenkins job with its own parameters (NAME=value)",
    examples=["run jenkins job deploy-app", "run jenkins job deploy-app VERSION=1.2"],
    params={"job": JOB, "parameters": JOB_PARAMETERS},
    ack="Starting Jenkins job {{ job }} (`{{ execution_id }}`)",
)
def build(ctx, job: str, parameters: dict | None = None):
    try:
        done = run_build(ctx, job=job, parameters=parameters or {})
    except BuildFailed as failed:
        ctx.reply(f"Last lines of the console of {failed.url}:\n```\n{failed.tail}\n```")
        raise
    return f"{done.job} #{done.number} succeeded in {done.seconds:.0f} s: {done.url}"


@command(
    "jenkins.scale",
    "scale jenkins workers to {{ count }}",
    description="Scale the Jenkins agents' auto-scaling group (busy agents finish first)",
    examples=["scale jenkins workers to 4"],
    params={"count": COUNT},
    lock="jenkins",  # one scaling at a time
    ack="Scaling Jenkins workers to {{ count }} (`{{ execution_id }}`)",
)
def scale(ctx, count: int):
    before = scale_workers(ctx, count)
    if before.desired == count:
        return f"{before.name} already had {count} agents; all {count} are online."
    return f"{before.name} scaled from {before.desired} to {count}; {count} agents online."


@command(
    "jenkins.status",
    "show jenkins workers",
    description="Show the Jenkins agents and their auto-scaling group",
    examples=["show jenkins workers"],
)
def status(ctx):
    found = agents(ctx)
    online = [a for a in found if a.online]
    busy = [a for a in online if not a.idle]
    offline = len(found) - len(online)
    lines = [f"{len(online)} Jenkins agents online ({len(busy)} busy), {offline} offline."]
    if ctx.services.config.get("jenkins.workers_group"):
        g = group(ctx)
        lines.append(f"Group {g.name}: desired {g.desired} (min {g.min}, max {g.max}).")
    for a in found:
        state = "busy" if a.online and not a.idle else "idle" if a.online else "offline"
        state += " (taken offline)" if a.drained else ""
        lines.append(f"• {a.name}: {state}" + (f", {a.instance}" if a.instance else ""))
    return "\n".join(lines)
