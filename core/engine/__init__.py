"""The engine: route planning, breakers, the attempt loop, approvals, budgets, the ledger."""
