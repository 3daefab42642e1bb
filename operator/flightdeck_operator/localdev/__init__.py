"""Local development infrastructure: a real control plane and a throwaway PostgreSQL."""
