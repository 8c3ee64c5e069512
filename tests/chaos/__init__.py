"""Fault soaks: every driver under a cycle of faults, checked throughout."""
