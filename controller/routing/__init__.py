"""Routing: waybill -> carrier (formats, check digits) -> destination (manifest, sort code, gazetteer) -> chute (rule table)."""
