use super::*;

fn id() -> StreamId {
    StreamId::new("test:device", 3)
}

fn sample_stream() -> Vec<u8> {
    let mut out = Vec::new();
    StreamEncoder::header(&id(), &mut out).unwrap();
    let mut enc = StreamEncoder::new(1024);
    let chunks = [
        StateChunk::Whole {
            section: 0,
            data: (0..200u8).collect(),
        },
        StateChunk::Whole {
            section: 7,
            data: vec![0xaa; 16],
        },
        StateChunk::Patch {
            section: 0,
            offset: 10,
            data: vec![1, 2, 3],
        },
        StateChunk::Patch {
            section: 7,
            offset: 12,
            data: vec![9; 4],
        },
    ];
    for c in &chunks {
        enc.chunk(c, &mut out).unwrap();
    }
    enc.end(&mut out).unwrap();
    out
}

fn decode_in_pieces(bytes: &[u8], piece: usize) -> Result<(StreamId, StateImage), StreamError> {
    let mut dec = StreamDecoder::new(StreamLimits::default());
    for p in bytes.chunks(piece) {
        // Errors are sticky and reported again by finish.
        let _ = dec.feed(p);
    }
    dec.finish()
}

#[test]
fn a_stream_decodes_to_the_patched_sections_however_it_is_cut() {
    let bytes = sample_stream();
    let mut expected0: Vec<u8> = (0..200u8).collect();
    expected0[10..13].copy_from_slice(&[1, 2, 3]);
    let mut expected7 = vec![0xaa; 16];
    expected7[12..16].copy_from_slice(&[9; 4]);
    for piece in [1, 3, 31, 32, 33, 1000] {
        let (sid, image) = decode_in_pieces(&bytes, piece).unwrap();
        assert_eq!(sid, id());
        assert_eq!(image.len(), 2);
        assert_eq!(image.section(0), Some(expected0.as_slice()));
        assert_eq!(image.section(7), Some(expected7.as_slice()));
        assert_eq!(image.total_bytes(), 216);
    }
}

#[test]
fn every_truncation_is_reported_as_truncated() {
    let bytes = sample_stream();
    for cut in 0..bytes.len() {
        let err = decode_in_pieces(&bytes[..cut], 7).unwrap_err();
        assert!(
            matches!(err, StreamError::Truncated { at, .. } if at == cut as u64),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    let bytes = sample_stream();
    for i in 0..bytes.len() {
        for bit in [0, 5] {
            let mut bad = bytes.clone();
            bad[i] ^= 1 << bit;
            assert!(
                decode_in_pieces(&bad, 64).is_err(),
                "flip of bit {bit} in byte {i} went unnoticed"
            );
        }
    }
}

#[test]
fn a_foreign_byte_stream_is_rejected_at_its_first_byte() {
    let mut dec = StreamDecoder::new(StreamLimits::default());
    let err = dec.feed(b"X").unwrap_err();
    assert!(matches!(err, StreamError::BadMagic { found } if found[0] == b'X'));
    assert_eq!(dec.feed(b"more").unwrap_err(), err);
}

#[test]
fn dropped_or_repeated_records_are_out_of_sequence() {
    let mut out = Vec::new();
    StreamEncoder::header(&id(), &mut out).unwrap();
    let mut enc = StreamEncoder::new(1024);
    let whole = StateChunk::Whole {
        section: 1,
        data: vec![5; 8],
    };
    enc.chunk(&whole, &mut out).unwrap();
    let record_len = whole.encoded_len() as usize;
    let repeated = out[out.len() - record_len..].to_vec();
    out.extend_from_slice(&repeated);
    let err = decode_in_pieces(&out, 100).unwrap_err();
    assert_eq!(
        err,
        StreamError::OutOfSequence {
            at: (id().header_len() + record_len) as u64,
            expected: 1,
            found: 0
        }
    );
}

#[test]
fn bytes_after_the_end_record_are_refused() {
    let mut bytes = sample_stream();
    let len = bytes.len() as u64;
    bytes.push(0);
    assert_eq!(
        decode_in_pieces(&bytes, 5).unwrap_err(),
        StreamError::TrailingBytes { at: len }
    );
}

#[test]
fn patches_must_stay_inside_a_section_already_sent() {
    let mut out = Vec::new();
    StreamEncoder::header(&id(), &mut out).unwrap();
    let mut enc = StreamEncoder::new(1024);
    let patch = StateChunk::Patch {
        section: 4,
        offset: 0,
        data: vec![1],
    };
    enc.chunk(&patch, &mut out).unwrap();
    assert!(matches!(
        decode_in_pieces(&out, 100).unwrap_err(),
        StreamError::PatchUnknownSection { section: 4, .. }
    ));

    let mut out = Vec::new();
    StreamEncoder::header(&id(), &mut out).unwrap();
    let mut enc = StreamEncoder::new(1024);
    for c in [
        StateChunk::Whole {
            section: 4,
            data: vec![0; 8],
        },
        StateChunk::Patch {
            section: 4,
            offset: 6,
            data: vec![1; 3],
        },
    ] {
        enc.chunk(&c, &mut out).unwrap();
    }
    assert!(matches!(
        decode_in_pieces(&out, 100).unwrap_err(),
        StreamError::PatchOutOfBounds {
            section: 4,
            offset: 6,
            len: 3,
            section_len: 8,
            ..
        }
    ));
}

#[test]
fn limits_refuse_oversized_records_before_buffering_them() {
    let bytes = sample_stream();
    let mut dec = StreamDecoder::new(StreamLimits {
        max_record: 100,
        max_image: 1 << 20,
    });
    let err = dec.feed(&bytes).unwrap_err();
    assert!(matches!(
        err,
        StreamError::RecordTooLarge {
            len: 200,
            max: 100,
            ..
        }
    ));
    let mut dec = StreamDecoder::new(StreamLimits {
        max_record: 1024,
        max_image: 210,
    });
    assert!(matches!(
        dec.feed(&bytes).unwrap_err(),
        StreamError::ImageTooLarge {
            size: 216,
            max: 210,
            ..
        }
    ));
}

#[test]
fn encoder_refuses_bad_kinds_and_oversized_chunks() {
    let mut out = Vec::new();
    assert!(matches!(
        StreamEncoder::header(&StreamId::new("", 1), &mut out),
        Err(EncodeError::KindLength { len: 0, .. })
    ));
    assert!(matches!(
        StreamEncoder::header(&StreamId::new("k".repeat(65), 1), &mut out),
        Err(EncodeError::KindLength { len: 65, .. })
    ));
    assert!(out.is_empty());
    let mut enc = StreamEncoder::new(4);
    let big = StateChunk::Whole {
        section: 2,
        data: vec![0; 5],
    };
    assert_eq!(
        enc.chunk(&big, &mut out),
        Err(EncodeError::ChunkTooLarge {
            section: 2,
            len: 5,
            max: 4
        })
    );
    assert!(out.is_empty());
    assert_eq!(enc.records(), 0);
}
