//! Plugs a policy component into the edge component with `wac-graph`, the
//! library behind `wac plug`: the edge's `levee:policy` imports are
//! satisfied by the policy's exports, and the result is one component.
//!
//! Swapping the policy is a re-compose: the edge is never rebuilt.

use anyhow::{Context, Result, bail};
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions};

/// The interface the edge imports and a policy exports.
pub const POLICY_INTERFACE: &str = "levee:policy/policy@0.1.0";

/// Composes `edge` (a component importing [`POLICY_INTERFACE`]) with
/// `policy` (a component exporting it and importing nothing).
pub fn plug(edge: &[u8], policy: &[u8]) -> Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let edge_pkg = Package::from_bytes("levee:edge", None, edge.to_vec(), graph.types_mut())
        .context("reading the edge component")?;
    let policy_pkg = Package::from_bytes(
        "levee:policy-impl",
        None,
        policy.to_vec(),
        graph.types_mut(),
    )
    .context("reading the policy component")?;
    let edge_id = graph.register_package(edge_pkg)?;
    let policy_id = graph.register_package(policy_pkg)?;
    {
        let types = graph.types();
        let edge_world = &types[graph[edge_id].ty()];
        if !edge_world.imports.contains_key(POLICY_INTERFACE) {
            bail!("the edge component does not import `{POLICY_INTERFACE}`: nothing to plug into");
        }
        let policy_world = &types[graph[policy_id].ty()];
        if let Some(name) = policy_world.imports.keys().next() {
            bail!(
                "the policy component imports `{name}`: a policy must import nothing \
                 (build it for wasm32-unknown-unknown, see guest/build-support)"
            );
        }
        if !policy_world.exports.contains_key(POLICY_INTERFACE) {
            bail!("the policy component does not export `{POLICY_INTERFACE}`");
        }
    }
    wac_graph::plug(&mut graph, vec![policy_id], edge_id)
        .context("plugging the policy into the edge")?;
    let bytes = graph
        .encode(EncodeOptions::default())
        .context("encoding the composed component")?;
    Ok(bytes)
}
