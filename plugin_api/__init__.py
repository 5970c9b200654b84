"""Python helpers on top of weaviate-client v4 for collections vectorised by clip-vectorizer.

Work in progress: collection config, import and search helpers arrive with the end-to-end issue.
"""
