//! Support for the host's own tests that need a real browser and pages to load, or a real
//! PostgreSQL: the fixture site, a throwaway PostgreSQL cluster and the `eventually` helper the
//! integration tests use too (`tests/support/`), included here so both run the same code.

#[path = "../../tests/support/eventually.rs"]
mod eventually;
#[path = "../../tests/support/postgres.rs"]
mod postgres;
#[path = "../../tests/support/site.rs"]
mod site;

pub use eventually::eventually;
pub use postgres::TestPostgres;
pub use site::FixtureSite;
