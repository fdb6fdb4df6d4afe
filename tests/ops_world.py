"""An estate in moto for the ops commands' tests: groups, services, environments with
databases and snapshots. Shared by the in-process and the end-to-end tests."""

from __future__ import annotations

from typing import Any

import boto3

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Version:
    Type: AWS::SSM::Parameter
    Properties: {Name: !Sub "/${AWS::StackName}/version", Type: String, Value: "1"}
"""

FAST = {  # poll intervals for tests: the emulators tick every 0.05-0.1 s
    "asg": {"poll_seconds": 0.05, "timeout": 20},
    "service": {"poll_seconds": 0.05, "timeout": 20},
    "restore": {"poll_seconds": 0.05, "timeout": 20},
    "sidekiq": {"poll_seconds": 0.05, "timeout": 20, "tag": "{environment}", "stale_seconds": 1},
}


def make_group(
    name: str,
    environment: str | None,
    *,
    min_size: int = 1,
    max_size: int = 4,
    desired: int = 1,
    managed: bool = True,
) -> None:
    ec2 = boto3.client("ec2")
    try:
        ec2.create_launch_template(
            LaunchTemplateName="ops-lt",
            LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
        )
    except ec2.exceptions.ClientError:
        pass  # already there
    tags: list[dict[str, Any]] = []
    if managed:
        tags.append({"Key": "marvin:managed", "Value": "true"})
    if environment:
        tags.append({"Key": "environment", "Value": environment})
    boto3.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": "ops-lt", "Version": "$Latest"},
        MinSize=min_size,
        MaxSize=max_size,
        DesiredCapacity=desired,
        AvailabilityZones=["us-east-1a"],
        Tags=[
            {
                **t,
                "ResourceId": name,
                "ResourceType": "auto-scaling-group",
                "PropagateAtLaunch": True,
            }
            for t in tags
        ],
    )


def group(name: str) -> dict[str, Any]:
    asg = boto3.client("autoscaling")
    return asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def make_service(cluster: str, name: str, desired: int = 2) -> None:
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(
        family=name,
        containerDefinitions=[{"name": name, "image": "example/app:1", "memory": 256}],
    )
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=name, desiredCount=desired)


def make_environment(family: str, environment: str, databases: list[str]) -> None:
    boto3.client("cloudformation").create_stack(
        StackName=f"{family}-{environment}", TemplateBody=TEMPLATE
    )
    rds = boto3.client("rds")
    for db in databases:
        rds.create_db_instance(
            DBInstanceIdentifier=f"{environment}-{db}",
            DBInstanceClass="db.t3.micro",
            Engine="postgres",
            MasterUsername="app",
            MasterUserPassword="not-a-real-secret",
            AllocatedStorage=20,
            BackupRetentionPeriod=1,  # moto then lists an automated rds: snapshot too
            Tags=[
                {"Key": "marvin:family", "Value": family},
                {"Key": "environment", "Value": environment},
            ],
        )


def snapshot(instance: str, ident: str) -> None:
    boto3.client("rds").create_db_snapshot(
        DBSnapshotIdentifier=ident, DBInstanceIdentifier=instance
    )


def instances() -> dict[str, dict[str, str]]:
    """identifier -> tags, for every DB instance."""
    rds = boto3.client("rds")
    return {
        d["DBInstanceIdentifier"]: {t["Key"]: t["Value"] for t in d.get("TagList", [])}
        for d in rds.describe_db_instances()["DBInstances"]
    }
