"""Training sets from Feast, the churn/CLV/next-best-offer models, evaluation and MLflow."""
