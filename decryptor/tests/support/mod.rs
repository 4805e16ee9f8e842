//! Test support shared by the decryptor's integration tests.
#![allow(dead_code)]

pub mod kms_wire;
pub mod localstack;
