"""Reports that read across domains: the programme dashboard and public disclosure (信息公开).

This is the composition layer: it may read the providers and vouchers domains; nothing imports it.
"""
