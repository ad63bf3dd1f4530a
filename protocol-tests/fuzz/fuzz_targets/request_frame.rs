//! A request frame (header and body, without the 4-byte size prefix), decoded exactly as the
//! broker decodes what it reads from a socket. Any panic or abort is a bug: no byte sequence
//! from a client may crash the broker.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dlog::protocol::decode_request_frame(bytes::Bytes::copy_from_slice(data));
});
