"""The pure decision core: no I/O."""
