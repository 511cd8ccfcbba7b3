"""Tests of `escrow_worker`: the store, the handlers, the worker, the CA and
its commands."""
