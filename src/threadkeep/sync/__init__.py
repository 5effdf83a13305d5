"""Realtime sync: the ElectricSQL HTTP shape protocol served from the change log.

``protocol`` holds the wire format (offsets, handles, messages), ``encoding`` the
PostgreSQL-text value format and column schema, ``shapes`` turns snapshots and
change-log rows into a shape's messages, ``hub`` holds live requests until a
commit concerns them, ``emulator`` answers one request, and ``proxy`` forwards
to a real Electric service instead. Nothing here imports FastAPI.
"""
