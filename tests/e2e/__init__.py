"""End-to-end stories: the README as written, the command line over RabbitMQ,
broker restarts and permissions, the architecture."""
