//! The plan: every generator of the fleet as a node of a DAG, with an edge from each
//! dependency to its dependent.
//!
//! A per-machine generator is one node per machine (`cinnabar/openssh`); a shared generator is
//! one node for the whole fleet (`shared/openssh-ca`), whichever machines declare it. A
//! dependency names a generator of the same machine: its per-machine node when it is
//! per-machine there, else the shared node.
//!
//! Everything here is iterative (Kahn's algorithm, breadth-first walks), so a chain of any
//! length is fine, and deterministic: nodes are numbered in [`NodeId`] order and ties in the
//! topological order break by that order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction::{Incoming, Outgoing};

use crate::manifest::{Generator, Manifest};

/// A node of the graph: a generator of one machine, or a shared generator.
///
/// Ordered by machine then generator, shared nodes (`machine: None`) first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    /// The machine, or `None` for a shared generator.
    pub machine: Option<String>,
    /// The generator's name.
    pub generator: String,
}

impl NodeId {
    /// The generator `generator` of machine `machine`.
    pub fn per_machine(machine: impl Into<String>, generator: impl Into<String>) -> NodeId {
        NodeId {
            machine: Some(machine.into()),
            generator: generator.into(),
        }
    }

    /// The shared generator `generator`.
    pub fn shared(generator: impl Into<String>) -> NodeId {
        NodeId {
            machine: None,
            generator: generator.into(),
        }
    }

    /// Whether this is a shared generator.
    pub fn is_shared(&self) -> bool {
        self.machine.is_none()
    }

    /// The node of generator `name`, declared as `generator` on machine `machine`.
    fn of(machine: &str, name: &str, generator: &Generator) -> NodeId {
        if generator.share {
            NodeId::shared(name)
        } else {
            NodeId::per_machine(machine, name)
        }
    }
}

impl fmt::Display for NodeId {
    /// `cinnabar/openssh`, or `shared/openssh-ca` for a shared generator.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.machine {
            Some(machine) => write!(f, "{machine}/{}", self.generator),
            None => write!(f, "shared/{}", self.generator),
        }
    }
}

/// Why the generators do not form a DAG.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// Generators depending on each other in a loop. Each node depends on the next one and the
    /// last on the first; the smallest node comes first. Displayed as
    /// `dependency cycle: cinnabar/a -> cinnabar/b -> cinnabar/a`, each arrow reading
    /// "depends on".
    #[error("dependency cycle: {}", cycle_text(.0))]
    Cycle(Vec<NodeId>),
    /// A dependency naming no generator of the machine (manifest validation reports this
    /// first; the graph checks again so it never trusts its input).
    #[error("{node}: dependency {dependency:?} is not a generator of machine {machine}")]
    UnknownDependency {
        /// The dependent generator.
        node: NodeId,
        /// The machine whose declaration names the dependency.
        machine: String,
        /// The name that does not resolve.
        dependency: String,
    },
    /// A shared generator depending on a per-machine generator.
    #[error("{node}: a shared generator cannot depend on the per-machine generator {dependency:?} of machine {machine}")]
    SharedDependsOnPerMachine {
        /// The shared generator.
        node: NodeId,
        /// The machine where the dependency is per-machine.
        machine: String,
        /// The per-machine generator's name.
        dependency: String,
    },
}

impl GraphError {
    /// The process exit code for this error: 2, a configuration error.
    pub fn exit_code(&self) -> i32 {
        2
    }
}

fn cycle_text(cycle: &[NodeId]) -> String {
    let mut parts: Vec<String> = cycle.iter().map(NodeId::to_string).collect();
    if let Some(first) = parts.first().cloned() {
        parts.push(first);
    }
    parts.join(" -> ")
}

/// The generators of a fleet and their dependencies, in a deterministic topological order.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Edges go from a dependency to its dependent. Node indices follow [`NodeId`] order.
    dag: DiGraph<NodeId, ()>,
    /// Each node's index.
    index: BTreeMap<NodeId, NodeIndex>,
    /// By node index: the machines declaring the node, sorted.
    machines: Vec<Vec<String>>,
    /// Node indices in topological order.
    order_index: Vec<NodeIndex>,
    /// The same order, as ids.
    order: Vec<NodeId>,
}

impl Graph {
    /// Build the graph of `manifest`: a node per (machine, generator) for per-machine
    /// generators, one node per shared generator name, an edge from each dependency to its
    /// dependent. Fails on a dependency that does not resolve and on a cycle.
    pub fn build(manifest: &Manifest) -> Result<Graph, GraphError> {
        let mut declared: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
        for (machine_name, machine) in &manifest.machines {
            for (name, generator) in &machine.generators {
                declared
                    .entry(NodeId::of(machine_name, name, generator))
                    .or_default()
                    .push(machine_name.clone());
            }
        }

        let mut dag = DiGraph::with_capacity(declared.len(), declared.len());
        let mut index = BTreeMap::new();
        let mut machines = Vec::with_capacity(declared.len());
        for (id, declaring) in declared {
            index.insert(id.clone(), dag.add_node(id));
            machines.push(declaring);
        }

        let mut edges = BTreeSet::new();
        for (machine_name, machine) in &manifest.machines {
            for (name, generator) in &machine.generators {
                let node = NodeId::of(machine_name, name, generator);
                for dependency in &generator.dependencies {
                    let unknown = || GraphError::UnknownDependency {
                        node: node.clone(),
                        machine: machine_name.clone(),
                        dependency: dependency.clone(),
                    };
                    let target = match machine.generators.get(dependency) {
                        None => return Err(unknown()),
                        Some(target) if generator.share && !target.share => {
                            return Err(GraphError::SharedDependsOnPerMachine {
                                node,
                                machine: machine_name.clone(),
                                dependency: dependency.clone(),
                            })
                        }
                        Some(target) => NodeId::of(machine_name, dependency, target),
                    };
                    match (index.get(&target), index.get(&node)) {
                        (Some(from), Some(to)) => edges.insert((*from, *to)),
                        _ => return Err(unknown()),
                    };
                }
            }
        }
        for (from, to) in edges {
            dag.add_edge(from, to, ());
        }

        let order_index = topological_order(&dag)?;
        let order = order_index.iter().map(|ix| dag[*ix].clone()).collect();
        Ok(Graph {
            dag,
            index,
            machines,
            order_index,
            order,
        })
    }

    /// Every node, dependencies before dependents; ties broken by [`NodeId`] order.
    pub fn order(&self) -> &[NodeId] {
        &self.order
    }

    /// Whether `n` is a node of the graph.
    pub fn contains(&self, n: &NodeId) -> bool {
        self.index.contains_key(n)
    }

    /// The direct dependencies of `n`, sorted (empty for an unknown node).
    pub fn dependencies(&self, n: &NodeId) -> Vec<NodeId> {
        self.neighbors(n, Incoming)
    }

    /// The direct dependents of `n`, sorted (empty for an unknown node).
    pub fn dependents(&self, n: &NodeId) -> Vec<NodeId> {
        self.neighbors(n, Outgoing)
    }

    /// The machines declaring `n`: every one for a shared node, its own for a per-machine
    /// node; sorted (empty for an unknown node).
    pub fn machines_of(&self, n: &NodeId) -> Vec<String> {
        self.index
            .get(n)
            .and_then(|ix| self.machines.get(ix.index()))
            .cloned()
            .unwrap_or_default()
    }

    /// The definition of `n` in `manifest` (the manifest the graph was built from); for a
    /// shared node, the declaration on the first machine declaring it.
    pub fn generator<'m>(&self, manifest: &'m Manifest, n: &NodeId) -> Option<&'m Generator> {
        let machine = match &n.machine {
            Some(machine) => machine.clone(),
            None => self.machines_of(n).into_iter().next()?,
        };
        manifest
            .machines
            .get(&machine)?
            .generators
            .get(&n.generator)
    }

    /// What must run when `seeds` run: the seeds and everything transitively depending on
    /// them, in topological order. Seeds that are not nodes of the graph are ignored. (A caller
    /// that also wants a seed's missing dependencies adds them from [`Graph::ancestors`].)
    pub fn closure(&self, seeds: &BTreeSet<NodeId>) -> Vec<NodeId> {
        let start = seeds
            .iter()
            .filter_map(|seed| self.index.get(seed).copied());
        let reached = self.reach(start, Outgoing);
        self.order_index
            .iter()
            .filter(|ix| reached[ix.index()])
            .map(|ix| self.dag[*ix].clone())
            .collect()
    }

    /// Every transitive dependency of `n` (not `n` itself).
    pub fn ancestors(&self, n: &NodeId) -> BTreeSet<NodeId> {
        let Some(&start) = self.index.get(n) else {
            return BTreeSet::new();
        };
        let reached = self.reach(std::iter::once(start), Incoming);
        self.dag
            .node_indices()
            .filter(|ix| *ix != start && reached[ix.index()])
            .map(|ix| self.dag[ix].clone())
            .collect()
    }

    /// The graph in Graphviz DOT, deterministic: nodes in [`NodeId`] order, then edges.
    /// Shared nodes are drawn as filled ellipses. With `machine`, only that machine's nodes
    /// and the shared nodes it declares.
    pub fn to_dot(&self, machine: Option<&str>) -> String {
        let shown: Vec<bool> = self
            .dag
            .node_indices()
            .map(|ix| match machine {
                None => true,
                Some(m) => match &self.dag[ix].machine {
                    Some(own) => own == m,
                    None => self.machines[ix.index()].iter().any(|d| d == m),
                },
            })
            .collect();
        let mut out = String::from("digraph vars {\n  node [shape=box];\n");
        for ix in self.dag.node_indices().filter(|ix| shown[ix.index()]) {
            let id = &self.dag[ix];
            out.push_str("  ");
            out.push_str(&dot_string(&id.to_string()));
            if id.is_shared() {
                out.push_str(" [shape=ellipse, style=filled, fillcolor=lightblue]");
            }
            out.push_str(";\n");
        }
        let mut edges: Vec<(NodeIndex, NodeIndex)> = self
            .dag
            .edge_indices()
            .filter_map(|e| self.dag.edge_endpoints(e))
            .filter(|(from, to)| shown[from.index()] && shown[to.index()])
            .collect();
        edges.sort_unstable();
        for (from, to) in edges {
            out.push_str(&format!(
                "  {} -> {};\n",
                dot_string(&self.dag[from].to_string()),
                dot_string(&self.dag[to].to_string())
            ));
        }
        out.push_str("}\n");
        out
    }

    /// The neighbours of `n` in `direction`, sorted.
    fn neighbors(&self, n: &NodeId, direction: petgraph::Direction) -> Vec<NodeId> {
        let Some(&ix) = self.index.get(n) else {
            return Vec::new();
        };
        let mut found: Vec<NodeIndex> = self.dag.neighbors_directed(ix, direction).collect();
        found.sort_unstable();
        found.dedup();
        found.into_iter().map(|ix| self.dag[ix].clone()).collect()
    }

    /// By node index: whether it is reachable from `start` (included) along `direction`.
    fn reach(
        &self,
        start: impl Iterator<Item = NodeIndex>,
        direction: petgraph::Direction,
    ) -> Vec<bool> {
        let mut reached = vec![false; self.dag.node_count()];
        let mut queue = VecDeque::new();
        for ix in start {
            if !reached[ix.index()] {
                reached[ix.index()] = true;
                queue.push_back(ix);
            }
        }
        while let Some(ix) = queue.pop_front() {
            for next in self.dag.neighbors_directed(ix, direction) {
                if !reached[next.index()] {
                    reached[next.index()] = true;
                    queue.push_back(next);
                }
            }
        }
        reached
    }
}

/// Kahn's algorithm with the ready nodes kept sorted, so ties break by node index (which is
/// [`NodeId`] order). On a cycle, finds one and returns it.
fn topological_order(dag: &DiGraph<NodeId, ()>) -> Result<Vec<NodeIndex>, GraphError> {
    let mut waiting: Vec<usize> = dag
        .node_indices()
        .map(|ix| dag.neighbors_directed(ix, Incoming).count())
        .collect();
    let mut ready: BTreeSet<NodeIndex> = dag
        .node_indices()
        .filter(|ix| waiting[ix.index()] == 0)
        .collect();
    let mut order = Vec::with_capacity(dag.node_count());
    while let Some(ix) = ready.pop_first() {
        order.push(ix);
        for next in dag.neighbors_directed(ix, Outgoing) {
            let count = &mut waiting[next.index()];
            *count -= 1;
            if *count == 0 {
                ready.insert(next);
            }
        }
    }
    if order.len() == dag.node_count() {
        Ok(order)
    } else {
        Err(GraphError::Cycle(find_cycle(dag, &waiting)))
    }
}

/// A cycle among the nodes Kahn's algorithm could not order (`waiting[i] > 0`).
///
/// Each such node still waits for an unordered dependency, so walking from one to its
/// smallest unordered dependency, again and again, must come back to a node already seen:
/// the walk from that node on is a cycle, in "depends on" order.
fn find_cycle(dag: &DiGraph<NodeId, ()>, waiting: &[usize]) -> Vec<NodeId> {
    let stuck = |ix: &NodeIndex| waiting[ix.index()] > 0;
    let Some(start) = dag.node_indices().find(stuck) else {
        return Vec::new();
    };
    let mut position: Vec<Option<usize>> = vec![None; dag.node_count()];
    let mut walk = Vec::new();
    let mut current = start;
    loop {
        if let Some(at) = position[current.index()] {
            walk.drain(..at);
            break;
        }
        position[current.index()] = Some(walk.len());
        walk.push(current);
        match dag
            .neighbors_directed(current, Incoming)
            .filter(stuck)
            .min()
        {
            Some(next) => current = next,
            None => break,
        }
    }
    if let Some(smallest) = walk.iter().enumerate().min_by_key(|(_, ix)| **ix) {
        let at = smallest.0;
        walk.rotate_left(at);
    }
    walk.into_iter().map(|ix| dag[ix].clone()).collect()
}

/// `s` as a DOT double-quoted string.
fn dot_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Class, Machine};
    use serde_json::json;

    fn manifest(value: serde_json::Value) -> Manifest {
        Manifest::from_json(&value.to_string(), "vars.json").unwrap()
    }

    fn graph(value: serde_json::Value) -> Graph {
        Graph::build(&manifest(value)).unwrap()
    }

    fn ids(nodes: &[NodeId]) -> Vec<String> {
        nodes.iter().map(NodeId::to_string).collect()
    }

    fn m(machine: &str, generator: &str) -> NodeId {
        NodeId::per_machine(machine, generator)
    }

    fn set(nodes: &[NodeId]) -> BTreeSet<NodeId> {
        nodes.iter().cloned().collect()
    }

    /// One machine `m` whose generators depend on each other as `deps` says.
    fn one_machine(deps: &[(&str, &[&str])]) -> Manifest {
        let mut generators = serde_json::Map::new();
        for (name, dependencies) in deps {
            generators.insert(name.to_string(), json!({"dependencies": dependencies}));
        }
        manifest(json!({"machines": {"m": {"class": "nixos", "generators": generators}}}))
    }

    /// A plain per-machine generator for hand-built manifests.
    fn generator(share: bool, dependencies: &[&str]) -> Generator {
        Generator {
            share,
            dependencies: dependencies.iter().map(|d| d.to_string()).collect(),
            files: BTreeMap::new(),
            prompts: BTreeMap::new(),
            runtime_inputs: vec![],
            script: String::new(),
            validation: None,
        }
    }

    /// A manifest of one machine per `machines` entry, built by hand (no validation).
    fn raw(machines: &[(&str, &[(&str, Generator)])]) -> Manifest {
        Manifest {
            machines: machines
                .iter()
                .map(|(name, generators)| {
                    let machine = Machine {
                        class: Class::Nixos,
                        tags: vec![],
                        generators: generators
                            .iter()
                            .map(|(g, def)| (g.to_string(), def.clone()))
                            .collect(),
                    };
                    (name.to_string(), machine)
                })
                .collect(),
        }
    }

    #[test]
    fn node_ids_display_and_order() {
        assert_eq!(m("cinnabar", "openssh").to_string(), "cinnabar/openssh");
        assert_eq!(
            NodeId::shared("openssh-ca").to_string(),
            "shared/openssh-ca"
        );
        assert!(NodeId::shared("z") < m("a", "a"));
        assert!(m("a", "z") < m("b", "a"));
        assert!(NodeId::shared("x").is_shared() && !m("a", "x").is_shared());
    }

    #[test]
    fn diamond() {
        let g = Graph::build(&one_machine(&[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["a"]),
            ("d", &["c", "b"]),
        ]))
        .unwrap();
        assert_eq!(ids(g.order()), ["m/a", "m/b", "m/c", "m/d"]);
        assert_eq!(g.dependencies(&m("m", "d")), [m("m", "b"), m("m", "c")]);
        assert_eq!(g.dependents(&m("m", "a")), [m("m", "b"), m("m", "c")]);
        assert!(g.dependencies(&m("m", "a")).is_empty());
        assert_eq!(
            g.ancestors(&m("m", "d")),
            set(&[m("m", "a"), m("m", "b"), m("m", "c")])
        );
        assert!(g.ancestors(&m("m", "a")).is_empty());
        assert_eq!(ids(&g.closure(&set(&[m("m", "b")]))), ["m/b", "m/d"]);
        assert_eq!(
            ids(&g.closure(&set(&[m("m", "a")]))),
            ["m/a", "m/b", "m/c", "m/d"]
        );
        assert_eq!(
            ids(&g.closure(&set(&[m("m", "c"), m("m", "b")]))),
            ["m/b", "m/c", "m/d"]
        );
        assert_eq!(g.machines_of(&m("m", "d")), ["m"]);
    }

    #[test]
    fn order_follows_dependencies_before_names() {
        let g = Graph::build(&one_machine(&[("a", &["b"]), ("b", &["c"]), ("c", &[])])).unwrap();
        assert_eq!(ids(g.order()), ["m/c", "m/b", "m/a"]);
    }

    #[test]
    fn order_is_deterministic_with_ties_broken_by_node_id() {
        let doc = json!({"machines": {
            "zeta": {"class": "nixos", "generators": {"a": {}, "ca": {"share": true}}},
            "alpha": {"class": "nixos", "generators": {"z": {"dependencies": ["ca"]}, "ca": {"share": true}, "b": {}}}
        }});
        let g = graph(doc.clone());
        assert_eq!(
            ids(g.order()),
            ["shared/ca", "alpha/b", "alpha/z", "zeta/a"]
        );
        for _ in 0..5 {
            assert_eq!(graph(doc.clone()).order(), g.order());
        }
    }

    #[test]
    fn shared_nodes_are_one_node_for_every_machine() {
        let g = graph(json!({"machines": {
            "x": {"class": "nixos", "generators": {
                "ca": {"share": true}, "host": {"dependencies": ["ca"]}}},
            "y": {"class": "darwin", "generators": {
                "ca": {"share": true}, "host": {"dependencies": ["ca"]}}},
            "z": {"class": "nixos", "generators": {"host": {}}}
        }}));
        let ca = NodeId::shared("ca");
        assert_eq!(ids(g.order()), ["shared/ca", "x/host", "y/host", "z/host"]);
        assert_eq!(g.machines_of(&ca), ["x", "y"]);
        assert_eq!(g.machines_of(&m("x", "host")), ["x"]);
        assert!(g.machines_of(&m("nope", "host")).is_empty());
        assert_eq!(g.dependents(&ca), [m("x", "host"), m("y", "host")]);
        assert_eq!(g.dependencies(&m("y", "host")), std::slice::from_ref(&ca));
        assert_eq!(
            ids(&g.closure(&set(std::slice::from_ref(&ca)))),
            ["shared/ca", "x/host", "y/host"]
        );
        assert!(g.contains(&ca) && !g.contains(&m("x", "ca")));
    }

    #[test]
    fn shared_chains_span_machines() {
        let g = graph(json!({"machines": {
            "x": {"class": "nixos", "generators": {
                "root": {"share": true}, "ca": {"share": true, "dependencies": ["root"]},
                "host": {"dependencies": ["ca"]}}},
            "y": {"class": "nixos", "generators": {
                "root": {"share": true}, "ca": {"share": true, "dependencies": ["root"]},
                "host": {"dependencies": ["root"]}}}
        }}));
        assert_eq!(
            ids(g.order()),
            ["shared/root", "shared/ca", "x/host", "y/host"]
        );
        assert_eq!(
            ids(&g.closure(&set(&[NodeId::shared("root")]))),
            ["shared/root", "shared/ca", "x/host", "y/host"]
        );
        assert_eq!(
            g.ancestors(&m("x", "host")),
            set(&[NodeId::shared("ca"), NodeId::shared("root")])
        );
    }

    #[test]
    fn a_machine_own_generator_wins_over_a_shared_one_of_the_same_name() {
        let g = graph(json!({"machines": {
            "x": {"class": "nixos", "generators": {"ca": {}, "host": {"dependencies": ["ca"]}}},
            "y": {"class": "nixos", "generators": {"ca": {"share": true}, "host": {"dependencies": ["ca"]}}}
        }}));
        assert_eq!(g.dependencies(&m("x", "host")), [m("x", "ca")]);
        assert_eq!(g.dependencies(&m("y", "host")), [NodeId::shared("ca")]);
    }

    #[test]
    fn generator_finds_the_definition() {
        let doc = json!({"machines": {
            "x": {"class": "nixos", "generators": {"ca": {"share": true, "script": "ca"}, "h": {"script": "h"}}},
            "y": {"class": "nixos", "generators": {"ca": {"share": true, "script": "ca"}}}
        }});
        let manifest = manifest(doc);
        let g = Graph::build(&manifest).unwrap();
        let ca = g.generator(&manifest, &NodeId::shared("ca")).unwrap();
        assert_eq!(ca.script, "ca");
        assert_eq!(g.generator(&manifest, &m("x", "h")).unwrap().script, "h");
        assert!(g.generator(&manifest, &m("y", "h")).is_none());
        assert!(g.generator(&manifest, &NodeId::shared("h")).is_none());
    }

    #[test]
    fn unknown_nodes_have_no_neighbours() {
        let g = Graph::build(&one_machine(&[("a", &[])])).unwrap();
        let ghost = m("m", "ghost");
        assert!(g.dependencies(&ghost).is_empty());
        assert!(g.dependents(&ghost).is_empty());
        assert!(g.ancestors(&ghost).is_empty());
        assert_eq!(ids(&g.closure(&set(&[ghost, m("m", "a")]))), ["m/a"]);
        assert!(g.closure(&BTreeSet::new()).is_empty());
    }

    #[test]
    fn cycles_are_printed_in_depends_on_order() {
        let err =
            Graph::build(&one_machine(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "dependency cycle: m/a -> m/b -> m/c -> m/a"
        );
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err,
            GraphError::Cycle(vec![m("m", "a"), m("m", "b"), m("m", "c")])
        );
    }

    #[test]
    fn a_cycle_starts_at_its_smallest_node() {
        let err =
            Graph::build(&one_machine(&[("c", &["a"]), ("a", &["b"]), ("b", &["c"])])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "dependency cycle: m/a -> m/b -> m/c -> m/a"
        );
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let err = Graph::build(&one_machine(&[("a", &["a"])])).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: m/a -> m/a");
    }

    #[test]
    fn nodes_leading_into_a_cycle_are_not_part_of_it() {
        let err = Graph::build(&one_machine(&[
            ("a", &["b"]),
            ("b", &["c"]),
            ("c", &["b"]),
            ("d", &[]),
        ]))
        .unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: m/b -> m/c -> m/b");
    }

    #[test]
    fn cycles_through_shared_generators() {
        let err = Graph::build(&manifest(json!({"machines": {
            "x": {"class": "nixos", "generators": {
                "s1": {"share": true, "dependencies": ["s2"]},
                "s2": {"share": true, "dependencies": ["s1"]}}}
        }})))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "dependency cycle: shared/s1 -> shared/s2 -> shared/s1"
        );
    }

    #[test]
    fn unresolved_dependencies_are_errors_not_panics() {
        let err = Graph::build(&raw(&[("x", &[("host", generator(false, &["ca"]))])])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x/host: dependency \"ca\" is not a generator of machine x"
        );
        let err = Graph::build(&raw(&[(
            "x",
            &[
                ("ca", generator(true, &["host"])),
                ("host", generator(false, &[])),
            ],
        )]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "shared/ca: a shared generator cannot depend on the per-machine generator \"host\" of machine x"
        );
    }

    #[test]
    fn empty_manifest_gives_an_empty_graph() {
        let g = Graph::build(&Manifest::default()).unwrap();
        assert!(g.order().is_empty());
        assert_eq!(g.to_dot(None), "digraph vars {\n  node [shape=box];\n}\n");
    }

    /// Runs `f` on a thread with a small stack: recursion proportional to the input would
    /// overflow it.
    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    fn chain(n: usize) -> Manifest {
        let mut generators = BTreeMap::new();
        for i in 0..n {
            let deps: Vec<String> = if i == 0 {
                vec![]
            } else {
                vec![format!("g{}", i - 1)]
            };
            let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
            generators.insert(format!("g{i}"), generator(false, &deps));
        }
        Manifest {
            machines: BTreeMap::from([(
                "m".to_string(),
                Machine {
                    class: Class::Nixos,
                    tags: vec![],
                    generators,
                },
            )]),
        }
    }

    #[test]
    fn a_chain_of_ten_thousand_is_fine() {
        on_small_stack(|| {
            let g = Graph::build(&chain(10_000)).unwrap();
            let expected: Vec<String> = (0..10_000).map(|i| format!("m/g{i}")).collect();
            assert_eq!(ids(g.order()), expected);
            assert_eq!(g.ancestors(&m("m", "g9999")).len(), 9_999);
            assert_eq!(g.closure(&set(&[m("m", "g0")])).len(), 10_000);
            assert_eq!(g.to_dot(None).lines().count(), 10_000 + 9_999 + 3);
        });
    }

    #[test]
    fn a_cycle_of_ten_thousand_is_found_and_printed() {
        on_small_stack(|| {
            let mut manifest = chain(10_000);
            if let Some(machine) = manifest.machines.get_mut("m") {
                if let Some(first) = machine.generators.get_mut("g0") {
                    first.dependencies.push("g9999".into());
                }
            }
            let Err(GraphError::Cycle(cycle)) = Graph::build(&manifest) else {
                panic!("expected a cycle");
            };
            assert_eq!(cycle.len(), 10_000);
            assert_eq!(cycle[0], m("m", "g0"));
            assert_eq!(cycle[1], m("m", "g9999"));
            let text = GraphError::Cycle(cycle).to_string();
            assert!(text.starts_with("dependency cycle: m/g0 -> m/g9999 -> m/g9998 -> "));
            assert!(text.ends_with(" -> m/g1 -> m/g0"));
        });
    }

    #[test]
    fn a_hundred_thousand_nodes_build() {
        let mut machines = BTreeMap::new();
        for i in 0..100 {
            let mut generators = BTreeMap::from([("ca".to_string(), generator(true, &[]))]);
            for j in 0..1000 {
                generators.insert(format!("g{j}"), generator(false, &["ca"]));
            }
            let machine = Machine {
                class: Class::Nixos,
                tags: vec![],
                generators,
            };
            machines.insert(format!("m{i}"), machine);
        }
        let g = Graph::build(&Manifest { machines }).unwrap();
        assert_eq!(g.order().len(), 100_001);
        assert_eq!(g.order()[0], NodeId::shared("ca"));
        assert_eq!(g.dependents(&NodeId::shared("ca")).len(), 100_000);
        assert_eq!(g.machines_of(&NodeId::shared("ca")).len(), 100);
    }

    fn dot_example() -> Graph {
        graph(json!({"machines": {
            "cinnabar": {"class": "nixos", "generators": {
                "openssh-ca": {"share": true},
                "openssh": {"dependencies": ["openssh-ca"]},
                "wireguard": {}}},
            "kaolin": {"class": "nixos", "generators": {
                "openssh-ca": {"share": true},
                "openssh": {"dependencies": ["openssh-ca"]}}},
            "quartz": {"class": "nixos", "generators": {"backup": {}}}
        }}))
    }

    #[test]
    fn dot_output_is_exact() {
        assert_eq!(
            dot_example().to_dot(None),
            "digraph vars {
  node [shape=box];
  \"shared/openssh-ca\" [shape=ellipse, style=filled, fillcolor=lightblue];
  \"cinnabar/openssh\";
  \"cinnabar/wireguard\";
  \"kaolin/openssh\";
  \"quartz/backup\";
  \"shared/openssh-ca\" -> \"cinnabar/openssh\";
  \"shared/openssh-ca\" -> \"kaolin/openssh\";
}
"
        );
    }

    #[test]
    fn dot_output_filtered_to_one_machine() {
        let g = dot_example();
        assert_eq!(
            g.to_dot(Some("kaolin")),
            "digraph vars {
  node [shape=box];
  \"shared/openssh-ca\" [shape=ellipse, style=filled, fillcolor=lightblue];
  \"kaolin/openssh\";
  \"shared/openssh-ca\" -> \"kaolin/openssh\";
}
"
        );
        assert_eq!(
            g.to_dot(Some("quartz")),
            "digraph vars {\n  node [shape=box];\n  \"quartz/backup\";\n}\n"
        );
        assert_eq!(
            g.to_dot(Some("nowhere")),
            "digraph vars {\n  node [shape=box];\n}\n"
        );
    }

    #[test]
    fn dot_escapes_quotes_and_backslashes() {
        let g =
            graph(json!({"machines": {"m": {"class": "nixos", "generators": {"a\"b\\c": {}}}}}));
        assert_eq!(
            g.to_dot(None),
            "digraph vars {\n  node [shape=box];\n  \"m/a\\\"b\\\\c\";\n}\n"
        );
    }
}
