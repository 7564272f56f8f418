"""Tools an agent's loop may call: built-ins and the operator's command tools."""
