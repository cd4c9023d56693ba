"""Customer warnings (``provbackup notify``): rules, records, templates, delivery.

:mod:`~provbackup.customer.rules` decides, purely, what is due for an account;
:mod:`~provbackup.customer.records` keeps what was sent, per account, on disk;
:mod:`~provbackup.customer.templates` loads and fills the message templates;
:mod:`~provbackup.customer.deliver` sends one message by mail or sms;
:mod:`~provbackup.customer.server` tells a server fault from a customer's.
"""
