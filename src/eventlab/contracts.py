"""Contracts: the shop's AsyncAPI document vs the schema registry (lesson 08).

The code lives in :mod:`eventlab.shop.contracts`, next to the shop it describes;
this module keeps ``from eventlab import contracts`` working for lesson 08.
"""

from __future__ import annotations

from eventlab.shop.contracts import Finding, apps, check, declare, document, payloads

__all__ = ["Finding", "apps", "check", "declare", "document", "payloads"]
