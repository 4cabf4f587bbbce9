//! The JSON schema of `consensus_ask`'s result (the `ask --json` object): committed as
//! docs/consensus_ask.schema.json, served from that file as the tool's output schema.

use rmcp::model::JsonObject;

/// The documented schema, as committed.
pub const TEXT: &str = include_str!("../../docs/consensus_ask.schema.json");

/// The schema served as `consensus_ask`'s `outputSchema`.
pub fn output_schema() -> JsonObject {
    serde_json::from_str(TEXT).unwrap_or_default()
}
