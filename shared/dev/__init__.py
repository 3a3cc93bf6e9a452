"""Dev-only code: the local stack, local services, the SQS poller and the test-model builder.

The Lambda image leaves this package out (.dockerignore) and no production module imports it.
"""
