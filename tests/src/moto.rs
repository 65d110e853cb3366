//! A local moto server (S3, SQS, EC2) for tests.
