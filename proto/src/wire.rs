//! The `prost` path used by the generated code (see `build.rs`).
//!
//! It is `prost` itself except for map encoding. prost leaves out a map entry's key or
//! value when it equals the default (`""`, `0`, an empty message). Go's protobuf
//! runtime, which Fabric uses, always writes both. An example is the empty
//! `common.Capability` value in every channel's capabilities map. The `btree_map`
//! module below always writes both, so encoded bytes match Fabric's. Decoding is
//! unchanged: it accepts either form.

pub use ::prost::*;

pub mod encoding {
    pub use ::prost::encoding::*;

    /// `BTreeMap` field codec that writes every entry's key and value, even if default.
    ///
    /// None of the protos has an enum-valued map, so the `*_with_default` variants
    /// prost-derive uses for those are not provided; add them if one appears.
    pub mod btree_map {
        use ::prost::alloc::collections::BTreeMap;
        use ::prost::bytes::BufMut;
        use ::prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

        pub use ::prost::encoding::btree_map::merge;

        /// Length of the key of field `tag` (wire type does not change the size).
        fn key_len(tag: u32) -> usize {
            encoded_len_varint(u64::from(tag << 3))
        }

        pub fn encode<K, V, B, KE, KL, VE, VL>(
            key_encode: KE,
            key_encoded_len: KL,
            val_encode: VE,
            val_encoded_len: VL,
            tag: u32,
            values: &BTreeMap<K, V>,
            buf: &mut B,
        ) where
            B: BufMut,
            KE: Fn(u32, &K, &mut B),
            KL: Fn(u32, &K) -> usize,
            VE: Fn(u32, &V, &mut B),
            VL: Fn(u32, &V) -> usize,
        {
            for (key, val) in values {
                let len = key_encoded_len(1, key) + val_encoded_len(2, val);
                encode_key(tag, WireType::LengthDelimited, buf);
                encode_varint(len as u64, buf);
                key_encode(1, key, buf);
                val_encode(2, val, buf);
            }
        }

        pub fn encoded_len<K, V, KL, VL>(key_encoded_len: KL, val_encoded_len: VL, tag: u32, values: &BTreeMap<K, V>) -> usize
        where
            KL: Fn(u32, &K) -> usize,
            VL: Fn(u32, &V) -> usize,
        {
            values
                .iter()
                .map(|(key, val)| {
                    let len = key_encoded_len(1, key) + val_encoded_len(2, val);
                    key_len(tag) + encoded_len_varint(len as u64) + len
                })
                .sum()
        }
    }
}
