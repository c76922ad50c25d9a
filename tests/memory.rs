//! Memory under slow readers: bounded per connection, and given back once the clients leave.
