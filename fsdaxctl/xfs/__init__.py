"""The XFS filesystem model: read-only access to an image or device, geometry, btree walks, owners.

Exports its modules; the names most callers want:
    fs.XfsFilesystem, fs.filesystem_info     the filesystem on a device (superblock, AG headers, warnings)
    owners.OwnerMap                          owners of byte ranges, from the rmapbt or a metadata walk
    piece.Piece, piece.OwnerSource           the answer's shape, and what every owner source provides
    devices.owner_map                        the owner source of one of the filesystem's devices
    detail.Describer                         the exact structure behind each piece, its paths, its impact
"""

__all__ = ["attr", "btree", "detail", "devices", "dir", "fs", "geometry", "inode", "log", "logrecover", "metadir",
           "owners", "paths", "piece", "rt", "verify", "walk", "walkvec", "where", "witness"]
