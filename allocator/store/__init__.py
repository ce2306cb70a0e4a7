"""Redis: acknowledged inputs, cached plans, the active-plan pointers. Small typed classes, pure keys."""
