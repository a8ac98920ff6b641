//! Node-to-node transport (ractor_cluster).
