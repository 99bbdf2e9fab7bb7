"""Test support shared by every test folder: raw protocol clients, probes, process facts."""
