"""Programmes (a funded voucher scheme) and their budget ledger."""
