//! `deploy/`: every Kubernetes manifest validates against the Kubernetes
//! schemas (`kubernetes-validate`, which `scripts/setup` installs), the KEDA
//! objects follow KEDA's documented spec, and the manifests agree with the
//! binary (its subcommands, flags and settings) and with one another.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tilefarm_queue::WORK_QUEUES;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn manifest_files() -> Vec<PathBuf> {
    let dir = deploy_dir().join("kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
}

/// Every document of every manifest, with the file it came from.
fn documents() -> Vec<(String, Value)> {
    let mut docs = Vec::new();
    for file in manifest_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
        for doc in parsed {
            docs.push((name.clone(), doc));
        }
    }
    docs
}

fn of_kind<'a>(docs: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == kind)
        .collect()
}

fn named<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    of_kind(docs, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name} in deploy/kubernetes"))
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// Fails with the keys of `v` (at `at`) that `allowed` does not list.
fn only_keys(v: &Value, allowed: &[&str], at: &str) {
    let unknown: Vec<&str> = keys(v)
        .into_iter()
        .filter(|k| !allowed.contains(k))
        .collect();
    assert!(
        unknown.is_empty(),
        "{at}: {unknown:?} not in KEDA's spec (allowed: {allowed:?})"
    );
}

fn kubernetes_validate() -> PathBuf {
    tilefarm_testkit::tools_venv().join("bin/kubernetes-validate")
}

/// The KEDA kinds, which the Kubernetes schemas do not have (checked below).
const KEDA_KINDS: [&str; 2] = ["ScaledObject", "TriggerAuthentication"];

#[test]
fn every_manifest_validates_against_the_kubernetes_schemas() {
    let tool = kubernetes_validate();
    let files = manifest_files();
    let out = Command::new(&tool)
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); scripts/setup installs kubernetes-validate in a venv",
                tool.display()
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    let docs = documents();
    let core = docs
        .iter()
        .filter(|(_, d)| !KEDA_KINDS.iter().any(|k| d["kind"] == *k))
        .count();
    let passed = text.lines().filter(|l| l.contains(" passed for ")).count();
    assert_eq!(
        passed, core,
        "each Kubernetes object is validated once:\n{text}"
    );
    for line in text.lines().filter(|l| !l.contains(" passed for ")) {
        let keda = KEDA_KINDS.iter().any(|k| {
            line.contains(&format!(
                "Couldn't find schema for kind {k} with api version keda.sh/v1alpha1"
            ))
        });
        assert!(keda, "unexpected kubernetes-validate output: {line}");
    }
}

/// The RabbitMQ scaler's metadata (KEDA's scalers/rabbitmq-queue page).
const RABBITMQ_METADATA: [&str; 15] = [
    "host",
    "protocol",
    "mode",
    "value",
    "activationValue",
    "queueName",
    "vhostName",
    "hostFromEnv",
    "unsafeSsl",
    "useRegex",
    "pageSize",
    "operation",
    "timeout",
    "excludeUnacknowledged",
    "queueLength",
];

fn text<'a>(v: &'a Value, at: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{at} must be a string, found {v}"))
}

fn int(v: &Value, at: &str) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("{at} must be an integer, found {v}"))
}

#[test]
fn the_scaled_object_follows_kedas_spec() {
    let docs = documents();
    let objects = of_kind(&docs, "ScaledObject");
    assert_eq!(objects.len(), 1, "one ScaledObject, for the workers");
    let so = objects[0];
    assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
    let spec = &so["spec"];
    // The spec's whole numbers, and its sections.
    let counts = [
        "pollingInterval",
        "cooldownPeriod",
        "initialCooldownPeriod",
        "idleReplicaCount",
        "minReplicaCount",
        "maxReplicaCount",
    ];
    let sections = ["scaleTargetRef", "fallback", "advanced", "triggers"];
    only_keys(spec, &[&counts[..], &sections[..]].concat(), "spec");

    // It scales the worker Deployment.
    let target = &spec["scaleTargetRef"];
    only_keys(
        target,
        &["apiVersion", "kind", "name", "envSourceContainerName"],
        "spec.scaleTargetRef",
    );
    assert_eq!(
        target["apiVersion"].as_str().unwrap_or("apps/v1"),
        "apps/v1"
    );
    assert_eq!(
        target["kind"].as_str().unwrap_or("Deployment"),
        "Deployment"
    );
    let deployment = named(
        &docs,
        "Deployment",
        text(&target["name"], "scaleTargetRef.name"),
    );
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(args[0], "worker", "the ScaledObject scales the workers");

    for field in counts {
        if !spec[field].is_null() {
            assert!(int(&spec[field], field) >= 0, "{field} is not negative");
        }
    }
    let min = spec["minReplicaCount"].as_i64().unwrap_or(0);
    let max = spec["maxReplicaCount"].as_i64().unwrap_or(100);
    assert!(min <= max, "minReplicaCount {min} > maxReplicaCount {max}");
    if !spec["idleReplicaCount"].is_null() {
        assert!(
            int(&spec["idleReplicaCount"], "idleReplicaCount") < min,
            "idleReplicaCount must be less than minReplicaCount"
        );
    }
    if !spec["fallback"].is_null() {
        only_keys(
            &spec["fallback"],
            &["failureThreshold", "replicas"],
            "spec.fallback",
        );
        assert!(
            int(
                &spec["fallback"]["failureThreshold"],
                "fallback.failureThreshold"
            ) > 0
        );
        assert!(int(&spec["fallback"]["replicas"], "fallback.replicas") > 0);
    }
    let advanced = &spec["advanced"];
    if !advanced.is_null() {
        only_keys(
            advanced,
            &[
                "restoreToOriginalReplicaCount",
                "horizontalPodAutoscalerConfig",
                "scalingModifiers",
            ],
            "spec.advanced",
        );
        only_keys(
            &advanced["horizontalPodAutoscalerConfig"],
            &["name", "behavior"],
            "spec.advanced.horizontalPodAutoscalerConfig",
        );
        only_keys(
            &advanced["horizontalPodAutoscalerConfig"]["behavior"],
            &["scaleUp", "scaleDown"],
            "horizontalPodAutoscalerConfig.behavior",
        );
    }

    let triggers = spec["triggers"]
        .as_array()
        .expect("spec.triggers is a list");
    assert!(!triggers.is_empty(), "at least one trigger");
    let auths = of_kind(&docs, "TriggerAuthentication");
    let mut queues = BTreeSet::new();
    for (i, t) in triggers.iter().enumerate() {
        let at = format!("triggers[{i}]");
        only_keys(
            t,
            &[
                "type",
                "metadata",
                "name",
                "useCachedMetrics",
                "authenticationRef",
                "metricType",
            ],
            &at,
        );
        assert_eq!(t["type"], "rabbitmq", "{at}: the RabbitMQ scaler");
        if !t["metricType"].is_null() {
            assert!(
                ["AverageValue", "Value"].contains(&text(&t["metricType"], &at)),
                "{at}.metricType"
            );
        }
        let m = &t["metadata"];
        only_keys(m, &RABBITMQ_METADATA, &format!("{at}.metadata"));
        for (k, v) in m.as_object().expect("metadata is a map") {
            assert!(
                v.is_string(),
                "{at}.metadata.{k}: KEDA metadata values are strings"
            );
        }
        assert!(
            m["queueLength"].is_null(),
            "{at}: queueLength is deprecated; use mode and value"
        );
        assert_eq!(
            m["mode"], "QueueLength",
            "{at}: scaled on the queue's length"
        );
        let value = text(&m["value"], &format!("{at}.metadata.value"));
        let n: u64 = value
            .parse()
            .unwrap_or_else(|_| panic!("{at}: a QueueLength value is a whole number, not {value}"));
        assert!(n > 0, "{at}: value");
        if !m["activationValue"].is_null() {
            let a = text(&m["activationValue"], &at);
            assert!(a.parse::<f64>().is_ok(), "{at}: activationValue {a}");
        }
        let protocol = m["protocol"].as_str().unwrap_or("auto");
        assert!(
            ["auto", "http", "amqp"].contains(&protocol),
            "{at}: protocol {protocol}"
        );
        for http_only in ["useRegex", "excludeUnacknowledged", "timeout"] {
            assert!(
                m[http_only].is_null() || protocol == "http",
                "{at}: {http_only} needs protocol http"
            );
        }

        // The broker's address: in the metadata or from the TriggerAuthentication.
        let host = if let Some(h) = m["host"].as_str() {
            Some(h.to_string())
        } else if !m["hostFromEnv"].is_null() {
            None
        } else {
            let auth_ref = &t["authenticationRef"];
            only_keys(
                auth_ref,
                &["name", "kind"],
                &format!("{at}.authenticationRef"),
            );
            let name = text(&auth_ref["name"], &format!("{at}.authenticationRef.name"));
            let auth = auths
                .iter()
                .find(|a| a["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{at}: no TriggerAuthentication named {name}"));
            Some(secret_host(&docs, auth))
        };
        if let Some(host) = host {
            let scheme = host.split("://").next().unwrap_or_default();
            match protocol {
                "http" => assert!(
                    ["http", "https"].contains(&scheme),
                    "{at}: protocol http, host {scheme}://"
                ),
                "amqp" => assert!(
                    ["amqp", "amqps"].contains(&scheme),
                    "{at}: protocol amqp, host {scheme}://"
                ),
                _ => assert!(
                    ["http", "https", "amqp", "amqps"].contains(&scheme),
                    "{at}: host {scheme}://"
                ),
            }
            if m["vhostName"].is_null() {
                let rest = host.split("://").nth(1).unwrap_or_default();
                assert!(
                    rest.contains('/'),
                    "{at}: the host names its vhost (or a trailing /)"
                );
            }
        }

        let queue = text(&m["queueName"], &format!("{at}.metadata.queueName"));
        assert!(
            WORK_QUEUES.contains(&queue),
            "{at}: {queue} is not one of the farm's work queues {WORK_QUEUES:?}"
        );
        queues.insert(queue);
    }
    for queue in ["tilefarm.render", "tilefarm.interactive"] {
        assert!(queues.contains(queue), "a trigger on {queue}");
    }
    if min == 0 {
        // From zero, a queue with no trigger would wait for ever.
        for queue in WORK_QUEUES {
            assert!(
                queues.contains(queue),
                "scaled from zero, yet nothing wakes on {queue}"
            );
        }
    }
}

/// The broker URL a TriggerAuthentication gives the scaler, from its Secret.
fn secret_host(docs: &[(String, Value)], auth: &Value) -> String {
    assert_eq!(auth["apiVersion"], "keda.sh/v1alpha1");
    let spec = &auth["spec"];
    let refs = spec["secretTargetRef"]
        .as_array()
        .expect("TriggerAuthentication.spec.secretTargetRef is a list");
    let mut host = None;
    for r in refs {
        only_keys(r, &["parameter", "name", "key"], "secretTargetRef[]");
        let parameter = text(&r["parameter"], "secretTargetRef.parameter");
        assert!(
            ["host", "tls", "ca", "cert", "key"].contains(&parameter),
            "secretTargetRef parameter {parameter} is not one the RabbitMQ scaler reads"
        );
        let secret = named(docs, "Secret", text(&r["name"], "secretTargetRef.name"));
        let key = text(&r["key"], "secretTargetRef.key");
        let value = secret["stringData"][key]
            .as_str()
            .unwrap_or_else(|| panic!("Secret {} has no stringData key {key}", r["name"]));
        if parameter == "host" {
            host = Some(value.to_string());
        }
    }
    host.expect("the TriggerAuthentication gives the scaler a host")
}

/// `tilefarm ARGS --help`, failing the test when the binary refuses the args.
fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tilefarm"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tilefarm {args:?} is refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The containers of every workload, with the workload's name.
fn containers(docs: &[(String, Value)]) -> Vec<(String, &Value, &Value)> {
    let mut out = Vec::new();
    for kind in ["Deployment", "Job"] {
        for d in of_kind(docs, kind) {
            let pod = &d["spec"]["template"]["spec"];
            for c in pod["containers"].as_array().expect("containers") {
                out.push((text(&d["metadata"]["name"], "name").to_string(), pod, c));
            }
        }
    }
    out
}

#[test]
fn the_manifests_run_real_subcommands_with_real_settings() {
    let docs = documents();
    let config = named(&docs, "ConfigMap", "tilefarm-config");
    let secrets = named(&docs, "Secret", "tilefarm-secrets");
    let every_setting: String = ["serve", "worker", "migrate"]
        .iter()
        .map(|sub| help(&[sub]))
        .collect();
    let mut checked = 0;
    for (workload, _, c) in containers(&docs) {
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap_or_else(|| panic!("{workload}: args"))
            .iter()
            .map(|a| text(a, "args[]"))
            .collect();
        let usage = help(&args);
        let accepts = |name: &str| usage.contains(&format!("[env: {name}="));
        let mut settings: BTreeMap<String, String> = BTreeMap::new();
        for e in c["env"].as_array().into_iter().flatten() {
            settings.insert(
                text(&e["name"], "env.name").into(),
                format!("{workload} env"),
            );
        }
        for source in c["envFrom"].as_array().into_iter().flatten() {
            let (from, data) = if !source["configMapRef"].is_null() {
                let m = named(
                    &docs,
                    "ConfigMap",
                    text(&source["configMapRef"]["name"], "name"),
                );
                ("ConfigMap", &m["data"])
            } else {
                let s = named(&docs, "Secret", text(&source["secretRef"]["name"], "name"));
                ("Secret", &s["stringData"])
            };
            for k in keys(data) {
                settings.insert(k.into(), format!("{workload} envFrom {from}"));
            }
        }
        for (name, from) in &settings {
            if name.starts_with("TILEFARM_") {
                // A setting a subcommand ignores is fine when another one reads it
                // (one ConfigMap serves all), but every name must be real.
                assert!(
                    every_setting.contains(&format!("[env: {name}=")),
                    "{from}: {name} is no setting of tilefarm"
                );
            } else {
                assert!(
                    name == "RUST_LOG" || name.starts_with("AWS_"),
                    "{from}: {name} is read by nothing"
                );
            }
        }
        if args[0] != "migrate" {
            for needed in [
                "TILEFARM_AMQP_URL",
                "TILEFARM_DATABASE_URL",
                "TILEFARM_STORE",
            ] {
                assert!(settings.contains_key(needed), "{workload} gets {needed}");
                assert!(accepts(needed));
            }
        }
        checked += 1;
    }
    assert!(checked >= 3, "the API, the workers and the migration");
    assert!(
        keys(&config["data"])
            .iter()
            .all(|k| !k.contains("PASSWORD"))
    );
    assert!(secrets["stringData"]["TILEFARM_DATABASE_URL"].is_string());
}

#[test]
fn the_api_is_probed_served_and_kept_available() {
    let docs = documents();
    let api = named(&docs, "Deployment", "tilefarm-api");
    let pod = &api["spec"]["template"]["spec"];
    let labels = &api["spec"]["template"]["metadata"]["labels"];
    let c = &pod["containers"][0];
    assert_eq!(c["args"][0], "serve");
    assert!(
        c["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--api-only")
    );
    let port_names: Vec<&str> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| text(&p["name"], "port name"))
        .collect();
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    for probe in ["readinessProbe", "livenessProbe"] {
        let port = text(&c[probe]["httpGet"]["port"], probe);
        assert!(port_names.contains(&port), "{probe} on a named port");
    }
    // The server listens where the probes and the Service look.
    let listen = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "TILEFARM_LISTEN")
        .expect("TILEFARM_LISTEN");
    let port: i64 = text(&listen["value"], "TILEFARM_LISTEN")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(text(&listen["value"], "TILEFARM_LISTEN").starts_with("0.0.0.0:"));
    assert_eq!(c["ports"][0]["containerPort"], port);

    let selects = |selector: &Value| keys(selector).iter().all(|k| labels[*k] == selector[*k]);
    let service = named(&docs, "Service", "tilefarm-api");
    assert!(
        selects(&service["spec"]["selector"]),
        "the Service selects the API pods"
    );
    assert!(port_names.contains(&text(
        &service["spec"]["ports"][0]["targetPort"],
        "targetPort"
    )));
    let pdb = named(&docs, "PodDisruptionBudget", "tilefarm-api");
    assert!(
        selects(&pdb["spec"]["selector"]["matchLabels"]),
        "the budget covers the API pods"
    );
    let replicas = int(&api["spec"]["replicas"], "replicas");
    let min_available = int(&pdb["spec"]["minAvailable"], "minAvailable");
    assert!(
        min_available < replicas,
        "a node drain can still evict one API pod ({min_available} of {replicas} must stay)"
    );
}

#[test]
fn workers_drain_before_they_go() {
    let docs = documents();
    let worker = named(&docs, "Deployment", "tilefarm-worker");
    let pod = &worker["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let grace = int(
        &pod["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    );
    // Long enough for an ingest in hand; under RabbitMQ's 30-minute consumer
    // timeout, past which the broker would take the task back anyway.
    assert!((300..1800).contains(&grace), "termination grace {grace} s");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| text(a, "arg"))
        .collect();
    let listen = args
        .iter()
        .position(|a| *a == "--metrics-listen")
        .map(|i| args[i + 1])
        .expect("the worker serves its metrics and drain hook");
    let port: i64 = listen.rsplit(':').next().unwrap().parse().unwrap();
    let ports = c["ports"].as_array().unwrap();
    let metrics = ports
        .iter()
        .find(|p| p["containerPort"] == port)
        .expect("the metrics port is declared");
    let name = &metrics["name"];
    assert_eq!(c["lifecycle"]["preStop"]["httpGet"]["path"], "/drain");
    assert_eq!(&c["lifecycle"]["preStop"]["httpGet"]["port"], name);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let annotations = &worker["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], port.to_string());
}

#[test]
fn the_container_build_file_builds_this_binary() {
    let file = std::fs::read_to_string(deploy_dir().join("Containerfile")).unwrap();
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml")).unwrap();
    let wanted = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("the workspace's rust-version")
        .trim_matches('"');
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    let from = file
        .lines()
        .find_map(|l| l.strip_prefix("FROM docker.io/library/rust:"))
        .expect("a Rust build stage");
    let image_rust = from.split('-').next().unwrap();
    assert!(
        version(image_rust) >= version(wanted),
        "the build image's Rust {image_rust} is older than the workspace's {wanted}"
    );
    assert!(file.contains("cargo build --release --locked -p tilefarm"));
    assert!(file.contains("ENTRYPOINT [\"/usr/local/bin/tilefarm\"]"));
    // The image runs as the user the manifests ask for.
    let user = file
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("an unprivileged USER");
    let uid: i64 = user.split(':').next().unwrap().parse().unwrap();
    for (workload, pod, _) in containers(&documents()) {
        assert_eq!(pod["securityContext"]["runAsUser"], uid, "{workload}");
    }
}
