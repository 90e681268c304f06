"""The defender-quarantine playbook: everything below is independent of the trigger.

No module in this package imports ``azure.functions``; the functions in ``functions/``
decode their input, call into here, and encode the result.
"""

__version__ = "0.1.0"
PRODUCT = "defender-quarantine"
