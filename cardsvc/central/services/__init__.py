"""The services layer: everything the routes and commands do, as plain functions over a Session."""
