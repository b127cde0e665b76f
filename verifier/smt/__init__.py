"""Exact decisions for small residual problems: the network as linear real arithmetic with
case splits (encode), decided by z3 (z3_solver) or by the MILP sibling (milp); stage holds
the entry points for the pipeline and branch and bound (the float margins come from
verifier.float_error, as for every stage)."""
