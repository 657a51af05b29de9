"""The XFS filesystem model: read-only access to an image or device, geometry, btree walks, owners."""
