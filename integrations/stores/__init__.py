"""What every store shares: the machinery behind ``jinav3.integrations.qdrant`` / ``.milvus`` / ``.pinecone``.

    base          Collection: client, signature, limits, writes (with pruning), search by vector, counts
    vector_store  VectorStore = a Collection + an encoder (add records, search text); embed_points
    records       records, ids, chunk ids, points, hits      signature  what a collection holds, when it matches
    filters       the portable filter                         limits     a store kind's limits on records
    writer        batched writes and stale-point removal     pruning    which stale points a write leaves
    hybrid        search modes, RRF, lexical encoders         retries    which store errors are transient
    registry      one entry per store kind (URI forms, extra, container names, classes)
    uri           store URIs: parsing, credentials, opening (library errors only)

Importing this package imports nothing: each module is imported where it is used.
"""
