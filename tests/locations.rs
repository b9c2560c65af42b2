//! Table-driven location matching: each case of `support/location_cases.rs` (a
//! configuration, a raw request path, the location nginx chooses or its status) goes
//! through `Locations::find` and through the service. `tests/nginx_parity.rs` checks the
//! same table against a real nginx.

#[path = "support/location_cases.rs"]
mod cases;

use std::collections::HashMap;
use std::convert::Infallible;

use http::{Request, Response};
use tower::util::BoxCloneSyncService;
use tower::{service_fn, ServiceExt};
use tower_upstream::location::Locations;

use cases::{Want, CASES, CONFIGS};

type Svc = BoxCloneSyncService<Request<()>, Response<String>, Infallible>;

fn says(name: &'static str) -> Svc {
    BoxCloneSyncService::new(service_fn(move |_: Request<()>| async move {
        Ok::<_, Infallible>(Response::new(name.to_owned()))
    }))
}

#[test]
fn the_table_is_big_enough() {
    assert!(CASES.len() >= 40, "{} cases", CASES.len());
    // Every configuration is used, and 400s are covered.
    for config in CONFIGS {
        assert!(
            CASES.iter().any(|(c, ..)| c.name == config.name),
            "{}",
            config.name
        );
    }
    assert!(CASES.iter().any(|(.., want)| *want == Want::Status(400)));
}

#[tokio::test]
async fn every_case_reaches_the_location_nginx_chooses() {
    let routers: HashMap<&str, Locations<Svc>> = CONFIGS
        .iter()
        .map(|c| (c.name, cases::build(c, says)))
        .collect();
    let mut failures = Vec::new();
    for &(config, path, want) in CASES {
        let locations = &routers[config.name];
        let names = cases::names(config);

        // The matcher on its own.
        let found = match locations.find(path) {
            Ok(Some(m)) => Want::Loc(names[m.id()]),
            Ok(None) => Want::Status(404),
            Err(_) => Want::Status(400),
        };
        // The service, as a server would call it.
        let req = Request::get(path).body(()).unwrap();
        let res = locations.clone().oneshot(req).await.unwrap();
        let served = match res.status().as_u16() {
            200 => Want::Loc(names.iter().find(|n| **n == res.body()).copied().unwrap()),
            status => Want::Status(status),
        };
        if found != want || served != want {
            failures.push(format!(
                "[{}] {path}: want {want:?}, find {found:?}, service {served:?}",
                config.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
