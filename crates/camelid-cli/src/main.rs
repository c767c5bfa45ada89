//! `camelid`: the command-line front end.

fn main() {
    println!("camelid");
}
