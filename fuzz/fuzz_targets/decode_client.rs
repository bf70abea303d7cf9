//! `decode_client` on arbitrary text: it never panics, and whatever it
//! accepts encodes to text that decodes to the same frame, whose encoding
//! is stable (a second round trip gives the same bytes).
#![no_main]

use chatsync_protocol::{decode_client, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Decoding takes text (the WebSocket layer has already checked UTF-8);
    // lossy conversion lets every input reach the decoder.
    let text = String::from_utf8_lossy(data);
    if let Ok(frame) = decode_client(&text) {
        let encoded = encode(&frame);
        let again = match decode_client(&encoded) {
            Ok(again) => again,
            Err(e) => panic!("{frame:?} encodes to {encoded:?}, which does not decode: {e}"),
        };
        assert_eq!(frame, again, "round trip through {encoded:?}");
        assert_eq!(encoded, encode(&again), "encoding is not stable");
    }
});
