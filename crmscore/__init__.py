"""crmscore: churn, customer lifetime value and next-best-offer scores for CRM systems."""

__version__ = "0.1.0"
