//! Streaming detokenization: for every corpus string, pushing its ids one at a time yields pieces
//! whose concatenation equals `decode(all ids)`, and no piece carries a broken character.

mod tokenizer_common;

#[test]
fn streaming_pieces_concatenate_to_full_decode() {
    let Some((model, _)) = tokenizer_common::model_and_reference() else { return };
    let tok = tokenizer_common::build_from_gguf(&tokenizer_common::gguf_vocab(&model));
    let corpus = tokenizer_common::corpus();
    let (mut bad_concat, mut bad_piece, mut pieces_total) = (Vec::new(), Vec::new(), 0usize);
    for (i, text) in corpus.iter().enumerate() {
        let ids = tok.encode(text, true).unwrap();
        let full = tok.decode(&ids, false).unwrap();
        let mut stream = tok.stream_decoder();
        let mut out = String::new();
        for &id in &ids {
            if let Some(piece) = stream.push(id).unwrap() {
                // A replacement character may only appear where the full decode has one too
                // (invalid byte sequences in the input): never from a split character.
                if piece.contains('\u{FFFD}') && !full.contains('\u{FFFD}') {
                    bad_piece.push(i);
                }
                out.push_str(&piece);
                pieces_total += 1;
            }
        }
        if let Some(rest) = stream.finish().unwrap() {
            out.push_str(&rest);
        }
        if out != full {
            bad_concat.push(i);
        }
    }
    eprintln!(
        "stream: {} strings, {pieces_total} pieces, {} concat mismatches, {} broken pieces",
        corpus.len(),
        bad_concat.len(),
        bad_piece.len()
    );
    assert!(bad_concat.is_empty(), "concatenated pieces != decode at corpus indices {bad_concat:?}");
    assert!(bad_piece.is_empty(), "a piece held a broken character at corpus indices {bad_piece:?}");
}

#[test]
fn split_characters_wait_for_their_last_byte() {
    let Some((model, _)) = tokenizer_common::model_and_reference() else { return };
    let tok = tokenizer_common::build_from_gguf(&tokenizer_common::gguf_vocab(&model));
    // U+20000 has no piece: it is four byte-fallback ids.
    let ids = tok.encode("a\u{20000}b", false).unwrap();
    let pieces: Vec<Option<String>> = {
        let mut s = tok.stream_decoder();
        ids.iter().map(|&id| s.push(id).unwrap()).collect()
    };
    let bytes: Vec<u32> =
        ["<0xF0>", "<0xA0>", "<0x80>", "<0x80>"].iter().map(|p| tok.token_to_id(p).unwrap()).collect();
    assert_eq!(&ids[1..5], &bytes[..], "expected byte fallback for U+20000");
    assert_eq!(pieces[0].as_deref(), Some("a"));
    assert_eq!(&pieces[1..4], &[None, None, None]);
    assert_eq!(pieces[4].as_deref(), Some("\u{20000}"));
    assert_eq!(pieces[5].as_deref(), Some("b"));

    // Trailing incomplete bytes are flushed by finish() as decode renders them.
    let mut s = tok.stream_decoder();
    assert_eq!(s.push(bytes[0]).unwrap(), None);
    assert_eq!(s.push(bytes[1]).unwrap(), None);
    assert_eq!(s.finish().unwrap(), Some(tok.decode(&bytes[..2], false).unwrap()));
    assert_eq!(s.finish().unwrap(), None);

    // Out-of-vocabulary ids are an error, not a panic.
    assert!(tok.stream_decoder().push(u32::MAX).is_err());
    assert!(tok.decode(&[u32::MAX], false).is_err());
}

#[test]
fn skipping_special_drops_turn_markers() {
    let Some((model, _)) = tokenizer_common::model_and_reference() else { return };
    let tok = tokenizer_common::build_from_gguf(&tokenizer_common::gguf_vocab(&model));
    let ids = tok.encode("Hello<end_of_turn>", true).unwrap();
    let mut s = tok.stream_decoder().skipping_special();
    let mut out = String::new();
    for &id in &ids {
        out.extend(s.push(id).unwrap());
    }
    out.extend(s.finish().unwrap());
    assert_eq!(out, "Hello");
}
