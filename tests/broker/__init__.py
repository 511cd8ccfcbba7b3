"""Tests of `broker`: the wire, the transports, the PKI both sides check, the console."""
