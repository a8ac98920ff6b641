//! Gossip membership (chitchat).
