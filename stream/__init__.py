"""Real-time Electronic Call Monitoring: rosters joined with live check-ins, escalations out."""

__version__ = "0.1.0"
