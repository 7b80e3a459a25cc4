//! Unit tests of the scoring functions on small measurements, for the branches the real
//! OONI measurements (tests/ooni_fastpath.rs) do not reach.

use serde_json::{json, Value};

use super::*;

fn fp() -> Fingerprints {
    Fingerprints::parse_csv(
        include_bytes!("../../tests/fixtures/fingerprints/fingerprints_dns.csv"),
        include_bytes!("../../tests/fixtures/fingerprints/fingerprints_http.csv"),
        "test-1",
    )
    .expect("test fingerprints")
    .0
}

fn msm(test: &str, tk: Value) -> Value {
    json!({"measurement_uid": "20261121223106.000001_IT_x_0123456789abcdef", "report_id": "r",
           "input": "https://example.org/", "probe_cc": "IT", "probe_asn": "AS64500",
           "measurement_start_time": "2026-11-21 22:31:05", "test_start_time": "2026-11-21 22:31:00",
           "test_name": test, "test_version": "0.2.5", "annotations": {"engine_version": "3.20.0"},
           "resolver_ip": "192.0.2.1", "test_runtime": 1.5, "test_keys": tk})
}

/// (anomaly, confirmed, failure, first reason)
fn verdict(m: &Value) -> (bool, bool, bool, String) {
    let v = judge(m, &fp());
    (
        v.anomaly,
        v.confirmed,
        v.failure,
        v.reasons.first().cloned().unwrap_or_default(),
    )
}

fn vd(a: bool, c: bool, f: bool, r: &str) -> (bool, bool, bool, String) {
    (a, c, f, r.to_owned())
}

#[test]
fn row_fields_and_scores_json() {
    let m = msm(
        "web_connectivity",
        json!({"blocking": false, "accessible": true}),
    );
    let (row, v) = score(&m, &fp());
    assert_eq!((row.anomaly, row.confirmed, row.msm_failure), (0, 0, 0));
    assert_eq!(
        (row.domain.as_str(), row.probe_asn, row.probe_cc.as_str()),
        ("example.org", 64500, "IT")
    );
    assert_eq!(row.measurement_start_time, 1_795_300_265);
    assert_eq!(row.reason, "");
    assert!(!v.unknown_test);
    assert_eq!(
        v.scores,
        json!({"blocking_general": 0.0, "blocking_global": 0.0, "blocking_country": 0.0,
               "blocking_isp": 0.0, "blocking_local": 0.0, "confirmed": false,
               "fingerprints_version": "test-1", "scoring_version": SCORING_VERSION, "reasons": []})
    );
    assert_eq!(row.scores, v.scores.to_string());
}

#[test]
fn web_connectivity_rules() {
    let wc = |tk: Value| verdict(&msm("web_connectivity", tk));
    // The probe's verdict.
    for b in ["dns", "tcp_ip", "http-diff", "http-failure"] {
        assert_eq!(
            wc(json!({"blocking": b, "accessible": false})),
            vd(true, false, false, &format!("blocking:{b}"))
        );
    }
    let (_, v) = score(&msm("web_connectivity", json!({"blocking": "dns"})), &fp());
    assert_eq!(v.blocking_type, "dns");
    assert_eq!(v.scores["analysis"], json!({"blocking_type": "dns"}));
    // Broken measurements.
    assert_eq!(
        wc(json!({})),
        vd(false, false, true, "failure:blocking_null")
    );
    assert_eq!(
        wc(json!({"blocking": "weird"})),
        vd(false, false, true, "failure:blocking_unsupported")
    );
    assert_eq!(
        wc(json!({"blocking": false, "title_match": "yes"})),
        vd(false, false, true, "failure:title_match_invalid")
    );
    assert_eq!(
        wc(json!({"blocking": false, "http_experiment_failure": "unknown_failure: x"})),
        vd(false, false, true, "failure:unknown_failure")
    );
    assert_eq!(
        wc(json!({"blocking": false, "accessible": null})),
        vd(false, false, true, "failure:accessible_null")
    );
    assert_eq!(
        verdict(&msm("web_connectivity", json!(["not", "an", "object"]))),
        vd(false, false, true, "malformed:test_keys is not an object")
    );
    // A blockpage confirms blocking (scope nat) even without the probe's verdict.
    let page = json!({"requests": [{"response": {"body": "<h1>This site has been blocked by vantage-test</h1>"}}]});
    assert_eq!(
        wc(page.clone()),
        vd(true, true, false, "blockpage:vantage_test_blockpage")
    );
    let (_, v) = score(&msm("web_connectivity", page), &fp());
    assert_eq!(v.scores["blocking_country"], 1.0);
    assert_eq!(v.scores["blocking_general"], 1.0);
    assert_eq!(
        v.scores["fingerprints"][0]["name"],
        "vantage_test_blockpage"
    );
    // ... also as base64, and in DNS answers.
    let b64 = json!({"blocking": false, "requests": [{"response": {"body": {"format": "base64",
        "data": "VGhpcyBzaXRlIGhhcyBiZWVuIGJsb2NrZWQgYnkgdmFudGFnZS10ZXN0"}}}]});
    assert_eq!(
        wc(b64),
        vd(true, true, false, "blockpage:vantage_test_blockpage")
    );
    let dns = json!({"blocking": "dns", "queries": [{"hostname": "example.org", "answers": [{"ipv4": "192.0.2.66"}]}]});
    let (_, v) = score(&msm("web_connectivity", dns), &fp());
    assert_eq!(
        (v.anomaly, v.confirmed, v.reasons.clone()),
        (
            true,
            true,
            vec![
                "dns.blockpage_ip:vantage_test_sinkhole".to_owned(),
                "blocking:dns".to_owned()
            ]
        )
    );
    assert_eq!(v.scores["blocking_general"], 2.0);
}

#[test]
fn unconfirmed_fingerprints_are_recorded_but_do_not_confirm() {
    let (fps, _) = Fingerprints::parse_csv(
        b"name,scope,other_names,location_found,pattern_type,pattern,confidence_no_fp,expected_countries,source,exp_url,notes\n",
        "name,scope,other_names,location_found,pattern_type,pattern,confidence_no_fp,expected_countries,source,exp_url,notes\n\
         squid,prod,,header.server,prefix,squid,5,,,,\n\
         fr,fp,,body,contains,Stop,5,FR,,,\n"
            .as_bytes(),
        "v",
    )
    .expect("parses");
    let m = msm(
        "web_connectivity",
        json!({"blocking": false, "requests": [{"response": {"body": "Stop", "headers": {"Server": "squid/4"}}}]}),
    );
    let v = judge(&m, &fps);
    assert_eq!((v.anomaly, v.confirmed, v.failure), (false, false, false));
    assert_eq!(
        v.reasons,
        [
            "fingerprint_unconfirmed:fr",
            "fingerprint_unconfirmed:squid"
        ]
    );
    let mut fr = m.clone();
    fr["probe_cc"] = json!("fr");
    assert!(judge(&fr, &fps).confirmed);
}

#[test]
fn instant_messaging_rules() {
    let tcp = |ok: bool| json!({"status": {"success": ok}});
    let req = |url: &str, failure: Value| json!({"request": {"url": url}, "failure": failure});
    let tg = |tk: Value| verdict(&msm("telegram", tk));
    assert_eq!(
        tg(
            json!({"tcp_connect": [tcp(true)], "requests": [req("http://149.154.167.51/", Value::Null)], "telegram_web_status": "ok"})
        ),
        vd(false, false, false, "")
    );
    assert_eq!(
        tg(
            json!({"tcp_connect": [tcp(false)], "requests": [req("http://149.154.167.51/", json!("eof_error"))]})
        ),
        vd(true, false, false, "telegram.tcp_unreachable:1/1")
    );
    let (_, v) = score(
        &msm("telegram", json!({"telegram_web_status": "blocked"})),
        &fp(),
    );
    assert_eq!(v.scores["blocking_general"], 2.0, "0.5 + 0.5 + 1");

    let wa = |tk: Value| verdict(&msm("whatsapp", tk));
    let ok_reqs = json!([
        req("https://web.whatsapp.com/", Value::Null),
        req("https://v.whatsapp.net/v2/register", Value::Null)
    ]);
    assert_eq!(
        wa(json!({"requests": ok_reqs, "tcp_connect": [tcp(false)]})),
        vd(true, false, false, "whatsapp.endpoints_unreachable")
    );
    assert_eq!(
        wa(json!({"requests": ok_reqs})),
        vd(false, false, true, "failure:no_endpoints_measured")
    );
    assert_eq!(
        wa(
            json!({"requests": [req("https://web.whatsapp.com/", json!("connection_reset")), req("https://v.whatsapp.net/v2/register", Value::Null)]})
        ),
        vd(true, false, false, "whatsapp.web_unreachable")
    );
    assert_eq!(
        wa(json!({"requests": [req("https://web.whatsapp.com/", Value::Null)]})),
        vd(false, false, true, "failure:whatsapp_requests_missing")
    );
    assert_eq!(wa(json!({})), vd(false, false, true, "failure:no_requests"));

    let fb = |tk: Value| verdict(&msm("facebook_messenger", tk));
    assert_eq!(
        fb(
            json!({"facebook_tcp_blocking": false, "facebook_dns_blocking": false, "facebook_edge_reachable": true})
        ),
        vd(false, false, false, "")
    );
    assert_eq!(
        fb(json!({"facebook_tcp_blocking": true, "facebook_edge_reachable": false})),
        vd(
            true,
            false,
            false,
            "facebook_messenger.facebook_edge_reachable:false"
        )
    );
    assert_eq!(
        fb(json!({"facebook_tcp_blocking": true})),
        vd(
            false,
            false,
            false,
            "facebook_messenger.facebook_tcp_blocking"
        ),
        "0.5 is not above the threshold"
    );
    let bug = json!({"facebook_b_api_dns_consistent": true, "facebook_b_api_reachable": true,
        "facebook_b_graph_dns_consistent": true, "facebook_b_graph_reachable": true,
        "facebook_dns_blocking": true, "facebook_edge_dns_consistent": true, "facebook_edge_reachable": true,
        "facebook_star_dns_consistent": true, "facebook_star_reachable": true,
        "facebook_stun_dns_consistent": true, "facebook_tcp_blocking": false});
    assert_eq!(
        fb(bug),
        vd(
            false,
            false,
            false,
            "facebook_messenger.dns_blocking_probe_bug"
        )
    );

    let sig = |tk: Value| verdict(&msm("signal", tk));
    let good = json!({"failed_operation": null, "failure": null, "signal_backend_status": "ok"});
    assert_eq!(sig(good), vd(false, false, false, ""));
    assert_eq!(
        sig(
            json!({"failed_operation": "connect", "failure": "eof", "signal_backend_status": "blocked"})
        ),
        vd(true, false, true, "failure:signal_failed")
    );
    assert_eq!(
        sig(json!({"failed_operation": null, "failure": null})),
        vd(false, false, true, "failure:signal_backend_status_unknown")
    );
    let mut bad_version = msm(
        "signal",
        json!({"failed_operation": null, "failure": null, "signal_backend_status": "ok"}),
    );
    bad_version["test_version"] = json!("0.2.4");
    assert_eq!(
        verdict(&bad_version),
        vd(false, false, true, "failure:signal_0.2.4_bug")
    );
    bad_version["test_version"] = json!("not-a-version");
    assert_eq!(
        verdict(&bad_version),
        vd(false, false, true, "failure:signal_version_unparsable")
    );
}

#[test]
fn circumvention_rules() {
    let tor_target = |f: Value| json!({"failure": f, "network_events": []});
    let t = |tk: Value| verdict(&msm("tor", tk));
    assert_eq!(
        t(
            json!({"targets": {"a": tor_target(json!("eof")), "b": tor_target(Value::Null), "c": tor_target(json!(false))}})
        ),
        vd(false, false, false, "tor.targets_failed:1/2"),
        "1/2 is not above 0.5"
    );
    assert_eq!(
        t(json!({"targets": {"a": tor_target(json!("eof")), "b": tor_target(json!("x"))}})),
        vd(true, false, false, "tor.targets_failed:2/2")
    );
    assert_eq!(
        t(json!({"targets": {"c": tor_target(json!(false))}})),
        vd(false, false, true, "failure:no_tor_target_ran")
    );
    assert_eq!(
        t(json!({"targets": {"a": {"failure": null}}})),
        vd(false, false, true, "failure:tor_target_incomplete")
    );
    assert_eq!(
        t(json!({"targets": {"a": tor_target(json!(""))}})),
        vd(
            false,
            false,
            true,
            "malformed:tor target with an empty failure"
        )
    );

    let vt = |tk: Value| verdict(&msm("vanilla_tor", tk));
    assert_eq!(
        vt(json!({"tor_logs": "", "tor_log": "Bootstrapped 100% (done): Done"})),
        vd(false, false, false, "")
    );
    assert_eq!(
        vt(json!({"tor_log": "x", "tor_progress": 100})),
        vd(false, false, false, "")
    );
    assert_eq!(
        vt(json!({"tor_log": "x", "tor_progress": 80})),
        vd(true, false, false, "vanilla_tor.bootstrap:80")
    );
    assert_eq!(vt(json!({})), vd(false, false, true, "failure:no_tor_logs"));

    let ps = |tk: Value| verdict(&msm("psiphon", tk));
    assert_eq!(
        ps(json!({"failure": null, "bootstrap_time": 3.2})),
        vd(false, false, false, "")
    );
    assert_eq!(
        ps(json!({"failure": "eof", "bootstrap_time": 0})),
        vd(true, false, false, "psiphon.failure")
    );
    assert_eq!(
        ps(json!({"failure": null})),
        vd(false, false, true, "failure:psiphon_no_bootstrap_time")
    );
    let mut no_resolver = msm("psiphon", json!({"failure": null, "bootstrap_time": 1}));
    no_resolver.as_object_mut().map(|o| o.remove("resolver_ip"));
    assert_eq!(
        verdict(&no_resolver),
        vd(false, false, true, "failure:no_resolver_ip")
    );

    let resp = |code: u16, server: &str| json!({"response": {"code": code, "headers": {"Server": server}}});
    let mk = |tk: Value| verdict(&msm("meek_fronted_requests_test", tk));
    assert_eq!(
        mk(json!({"requests": [resp(200, "ECAcc (bsa/EB13)")]})),
        vd(false, false, false, "")
    );
    assert_eq!(
        mk(json!({"requests": [resp(200, "nginx"), resp(200, "nginx")]})),
        vd(true, false, false, "meek.unexpected_server")
    );
    assert_eq!(mk(json!({})), vd(true, false, true, "failure:no_requests"));
    assert_eq!(
        mk(json!({"requests": [{"response": null}]})),
        vd(true, false, false, "meek.no_response")
    );

    let sf = |tk: Value| verdict(&msm("torsf", tk));
    assert_eq!(
        sf(json!({"failure": "timeout"})),
        vd(true, false, false, "torsf.failure")
    );
    assert_eq!(
        sf(json!({"failure": null, "bootstrap_time": 9.0})),
        vd(false, false, false, "")
    );
}

#[test]
fn middlebox_rules() {
    let echo = |headers: Value| {
        json!({"requests": [{"request": {"headers": {"Host": "example.org", "Connection": "close"}},
            "response": {"body": json!({"headers_dict": headers}).to_string()}}]})
    };
    let h = |tk: Value| verdict(&msm("http_header_field_manipulation", tk));
    assert_eq!(
        h(echo(json!({"Host": ["example.org"]}))),
        vd(false, false, false, "")
    );
    assert_eq!(
        h(echo(json!({"host": ["example.org"], "Via": ["proxy"]}))),
        vd(true, false, false, "hhfm.headers_changed:3")
    );
    assert_eq!(
        h(json!({"requests": [{"response": {"body": "not json"}}]})),
        vd(true, false, false, "hhfm.malformed_echo")
    );
    assert_eq!(
        h(json!({"requests": [{"response": {}}]})),
        vd(true, false, false, "hhfm.empty_body")
    );
    let r = |tk: Value| verdict(&msm("http_invalid_request_line", tk));
    assert_eq!(
        r(json!({"sent": ["GET / HTTP/1.1"], "received": ["GET / HTTP/1.1"]})),
        vd(false, false, false, "")
    );
    assert_eq!(r(json!({})), vd(false, false, true, "failure:nothing_sent"));
}

#[test]
fn other_rules() {
    let tc = |c: &str| verdict(&msm("tcp_connect", json!({"connection": c})));
    assert_eq!(tc("success"), vd(false, false, false, ""));
    assert_eq!(
        tc("connection_refused_error"),
        vd(true, false, false, "tcp_connect.connection_refused_error")
    );
    assert_eq!(tc("weird"), vd(true, false, false, "tcp_connect.weird"));
    let mut no_input = msm("tcp_connect", json!({"connection": "success"}));
    no_input["input"] = json!("");
    assert_eq!(
        verdict(&no_input),
        vd(false, false, true, "malformed:tcp_connect without input")
    );

    let d = |tk: Value| verdict(&msm("dash", tk));
    assert_eq!(d(json!({"simple": {}})), vd(false, false, false, ""));
    assert_eq!(
        d(json!({"failure": "ssl_error: x"})),
        vd(false, false, true, "failure:ssl_error: x")
    );
    assert_eq!(
        d(json!({"failure": "?"})),
        vd(false, false, true, "failure:probe_error")
    );
    assert_eq!(d(json!({})), vd(false, false, true, "failure:no_test_keys"));

    let st = |tk: Value| verdict(&msm("stunreachability", tk));
    assert_eq!(st(json!({"failure": null})), vd(false, false, false, ""));
    assert_eq!(
        st(json!({"failure": "timeout"})),
        vd(true, false, false, "stunreachability.failure")
    );

    let ov = |tk: Value| verdict(&msm("openvpn", tk));
    assert_eq!(ov(json!({"success": true})), vd(false, false, false, ""));
    assert_eq!(
        ov(json!({"success": false})),
        vd(true, false, false, "openvpn.failed")
    );
    assert_eq!(ov(json!({})), vd(false, false, true, "failure:no_success"));

    let bw = |tk: Value| verdict(&msm("browser_web", tk));
    assert_eq!(bw(json!({"result": "ok"})), vd(false, false, false, ""));
    assert_eq!(
        bw(json!({})),
        vd(false, false, true, "failure:browser_web_no_result")
    );

    for (t, ok) in [
        ("ndt", true),
        ("riseupvpn", true),
        ("dns_consistency", true),
    ] {
        let v = judge(&msm(t, json!({"failure": "x"})), &fp());
        assert_eq!((v.anomaly, v.failure), (false, !ok), "{t}");
    }
    let v = judge(&msm("ndt", json!({})), &fp());
    assert!(
        v.scores.get("blocking_general").is_none(),
        "ndt stores {{}}"
    );
}

#[test]
fn http_requests_rules() {
    let hr = |tk: Value| verdict(&msm("http_requests", tk));
    assert_eq!(
        hr(json!({"body_length_match": true, "headers_match": true})),
        vd(false, false, false, "")
    );
    assert_eq!(
        hr(json!({"body_length_match": false, "headers_match": true})),
        vd(true, false, false, "http_requests.mismatch")
    );
    assert_eq!(
        hr(json!({"body_length_match": true})),
        vd(false, false, true, "failure:http_requests_incomplete")
    );
    // Confirmed by a blockpage, but (as OONI) not added to blocking_general.
    let tk = json!({"body_length_match": true, "headers_match": true, "requests": [
        {"request": {"tor": {"is_tor": false}}, "response": {"body": "This site has been blocked by vantage-test"}}]});
    assert_eq!(
        hr(tk),
        vd(false, true, false, "blockpage:vantage_test_blockpage")
    );
}

#[test]
fn unknown_and_unscored_tests_are_stored_as_failures() {
    let mut s = Scorer::default();
    let f = fp();
    let row = s.next(&msm("brand_new_test", json!({})), &f);
    assert_eq!(
        (row.anomaly, row.msm_failure, row.reason.as_str()),
        (0, 1, "unsupported_test")
    );
    assert_eq!(row.test_name, "brand_new_test");
    assert!(judge(&msm("brand_new_test", json!({})), &f).unknown_test);
    for t in ["dnscheck", "urlgetter", "echcheck"] {
        let row = s.next(&msm(t, json!({"failure": null})), &f);
        assert_eq!(
            (row.anomaly, row.msm_failure, row.reason.as_str()),
            (0, 1, "unscored_test"),
            "{t}"
        );
    }
    let row = s.next(&json!({"measurement_uid": "x"}), &f);
    assert_eq!(
        (row.msm_failure, row.reason.as_str()),
        (1, "unsupported_test")
    );
    assert_eq!(s.unknown_tests, 2);
}

#[test]
fn start_times_far_from_the_receive_time_are_failures() {
    let mut m = msm("web_connectivity", json!({"blocking": false}));
    m["measurement_uid"] = json!("20211109115946.469008_IR_webconnectivity_9ba8a0d4f9b116fe");
    m["measurement_start_time"] = json!("2021-11-09 23:59:31");
    let v = judge(&m, &fp());
    assert_eq!(
        (v.failure, v.reasons[0].as_str()),
        (true, "failure:start_time_in_the_future")
    );
    assert_eq!(v.scores["msg"], "Measurement start time from the future");
    m["measurement_start_time"] = json!("2020-01-01 00:00:01");
    assert_eq!(judge(&m, &fp()).reasons, ["failure:start_time_too_old"]);
    m["measurement_start_time"] = json!("2021-11-09 12:30:00");
    assert!(!judge(&m, &fp()).failure, "half an hour ahead is tolerated");
}
