"""FlightDeck Operator: governs which release of an AI agent is live in each environment."""

__version__ = "0.1.0"
