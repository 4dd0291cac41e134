"""stub"""
def register(cli): pass
