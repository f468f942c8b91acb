"""The bundled pipeline-parallel training engine and its planner.

Importing this package imports no torch: the planner and the op-log reader are pure Python.
"""
