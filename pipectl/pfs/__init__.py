"""Versioned data: repos, branches, commits, content-addressed files."""

from .api import PFS
from .model import Branch, Commit, Provenance, RepoInfo
from .tree import FileEntry, Node, Tree

__all__ = ["PFS", "Branch", "Commit", "Provenance", "RepoInfo", "FileEntry", "Node", "Tree"]
