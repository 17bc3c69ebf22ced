"""SLA clocks: business time (``clock``) and the SLA rules for tickets (``policy``).

Both modules are pure: plain values in, plain values out, no database. The selector
``inbox.selectors.sla`` builds their inputs from the database; ``inbox.services.sla``
and ``inbox.services.tickets`` write their outputs. See docs/sla.md.
"""
