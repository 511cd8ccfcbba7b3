"""Tests of `client`: the consignment format and engine, the agents, the identity commands."""
