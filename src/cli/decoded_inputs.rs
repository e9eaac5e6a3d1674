//! The inputs of `import` in the sequentially decoded formats (queue_log, call
//! records): the format guessed when not given, the file read whole (PBX logs are
//! small), decoded together (queue_log rules look across rotated files).

use super::inputs::Input;
use anyhow::Context;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::engine::{EncodedChunk, Engine};
use netwait_ingest::decoded::{Decodable, DecodeSettings, decode_inputs};
use netwait_ingest::format::Format;
use std::io::Read;

/// Bytes looked at to guess a format (a first row is far shorter).
const HEAD_BYTES: usize = 64 << 10;

/// The format of an input: the one given, else guessed from a file's first row (without
/// moving its read position); stdin is NDJSON unless given.
pub fn format_of(input: &Input, given: Option<Format>) -> anyhow::Result<Format> {
    if let Some(f) = given {
        return Ok(f);
    }
    let Input::File {
        file,
        regular: true,
        name,
        ..
    } = input
    else {
        return Ok(Format::Ndjson);
    };
    use std::os::unix::fs::FileExt;
    let mut head = vec![0; HEAD_BYTES];
    let n = file
        .read_at(&mut head, 0)
        .with_context(|| format!("reading {name}"))?;
    Ok(Format::detect(&head[..n]))
}

/// Reads an input whole.
pub fn read_whole(input: Input, format: Format) -> anyhow::Result<Decodable> {
    let mut bytes = Vec::new();
    let name = input.name().to_owned();
    match input {
        Input::Stdin => std::io::stdin().read_to_end(&mut bytes),
        Input::File { mut file, .. } => file.read_to_end(&mut bytes),
    }
    .with_context(|| format!("reading {name}"))?;
    Ok(Decodable {
        name,
        format,
        bytes,
    })
}

/// Decodes the inputs read whole into what the engine stages, in order.
pub fn decode(
    inputs: &[Decodable],
    settings: &DecodeSettings,
    engine: &Engine,
    pseudo: &Pseudonymizer,
) -> Vec<Vec<EncodedChunk>> {
    decode_inputs(inputs, settings, pseudo, &engine.key_hasher())
}
