"""Front ends: each turns its own input into ``Message``s, brings its own identity resolver
and says which channel kind (chat, cli, api) it is. Slack, the console and the CLI."""
