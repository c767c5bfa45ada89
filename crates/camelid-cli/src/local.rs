//! `camelid models --local`: where camelid keeps what it fetched, and how big it is (the
//! listing and its text are `camelid_hub::Listing`'s).

use anyhow::Result;

use crate::fetch::Resolver;

pub fn run(json: bool) -> Result<()> {
    let listing = Resolver::from_env()?.listing();
    if json {
        println!("{}", serde_json::to_string_pretty(&listing.to_json())?);
    } else {
        print!("{listing}");
    }
    Ok(())
}
