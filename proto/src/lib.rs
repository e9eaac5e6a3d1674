//! Generated protobuf types and gRPC stubs of `netwait.v1`.
#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("netwait.v1");
}

/// Encoded `FileDescriptorSet` of the API, for the gRPC reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/netwait_descriptor.bin"));
